extension Store {
    /// Opens (creating if needed) the database at `path`, applies pending migrations, and wires
    /// in the coordinator's decisions (``CoordinatorDecisions``).
    /// - Throws: ``StoreError`` naming the file when it cannot be opened or migrated.
    public convenience init(path: String) throws(StoreError) {
        try self.init(path: path, decisions: CoordinatorDecisions())
    }
}
