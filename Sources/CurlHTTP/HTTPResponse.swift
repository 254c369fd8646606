/// A complete HTTP response (any status: mapping statuses to errors is the caller's policy).
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    /// The headers of the final response (interim `100 Continue` headers are dropped).
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The body as UTF-8 text (invalid bytes replaced).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}
