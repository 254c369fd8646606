/// `admin`: a command from the CLI (`workers`, `shards`, `status`, `enqueue`, …) with JSON
/// arguments, authenticated with its own token proof. Answered with a JSON document.
public struct AdminRequest: Sendable, Equatable, WireCodable {
    public var command: String
    public var arguments: [UInt8]
    public var proof: TokenProof

    public init(command: String, arguments: [UInt8], proof: TokenProof) {
        self.command = command
        self.arguments = arguments
        self.proof = proof
    }

    public init(from r: inout WireReader) throws(WireError) {
        command = try r.readString("admin.command")
        arguments = try r.readBytes("admin.arguments")
        proof = try TokenProof(from: &r)
    }

    public func encode(to w: inout WireWriter) {
        w.write(command)
        w.writeBytes(arguments)
        proof.encode(to: &w)
    }
}

public struct AdminReply: Sendable, Equatable, WireCodable {
    /// The answer as a JSON document.
    public var json: [UInt8]

    public init(json: [UInt8]) { self.json = json }

    public init(from r: inout WireReader) throws(WireError) { json = try r.readBytes("adminReply.json") }

    public func encode(to w: inout WireWriter) { w.writeBytes(json) }
}
