/// Facts about an NNG URL such as `tcp://0.0.0.0:5555` or `tls+tcp://coord:5555`.
public struct Endpoint: Sendable, Equatable {
    public let url: String
    public let scheme: String
    public let host: String
    public let port: Int?

    /// - Throws: ``ConfigurationError`` when the URL is not `scheme://host:port` (or `ipc://path`).
    public init(_ url: String) throws(ConfigurationError) {
        self.url = url
        guard let sep = url.range(of: "://") else {
            throw ConfigurationError("\(url) is not an address: write it as tcp://HOST:PORT or tls+tcp://HOST:PORT")
        }
        scheme = String(url[..<sep.lowerBound])
        let rest = String(url[sep.upperBound...])
        guard ["tcp", "tcp4", "tcp6", "tls+tcp", "tls+tcp4", "tls+tcp6", "ipc", "inproc"].contains(scheme) else {
            throw ConfigurationError("unsupported scheme \(scheme):// in \(url): use tcp:// or tls+tcp://")
        }
        if scheme == "ipc" || scheme == "inproc" {
            host = rest
            port = nil
            return
        }
        guard let colon = rest.lastIndex(of: ":"), let p = Int(rest[rest.index(after: colon)...]), (0...65535).contains(p) else {
            throw ConfigurationError("\(url) has no port: write it as \(scheme)://HOST:PORT")
        }
        var h = String(rest[..<colon])
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        host = h
        port = p
    }

    /// True for addresses only this machine can reach.
    public var isLoopback: Bool {
        if scheme == "ipc" || scheme == "inproc" { return true }
        return host == "localhost" || host.hasPrefix("127.") || host == "::1"
    }

    public var isTLS: Bool { scheme.hasPrefix("tls+") }
}
