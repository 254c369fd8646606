/// Invariant checks for fuzz targets: a broken invariant stops the process with a message, which
/// libFuzzer reports as a crash and saves the input that caused it.
public enum FuzzCheck {
    /// Stops the process when `condition` is false. Unlike `precondition`, it is checked in every
    /// build configuration.
    public static func require(
        _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
        file: StaticString = #fileID, line: UInt = #line
    ) {
        if !condition() { fatalError("fuzz invariant broken: \(message())", file: file, line: line) }
    }
}
