#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The shared secret that admits workers and CLI clients to a cluster.
///
/// The token itself never travels: requests carry a ``TokenProof`` (an HMAC of the request's
/// identity, a timestamp and a nonce). It is never printed: `description` is redacted.
public struct ClusterToken: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    let secret: [UInt8]

    public init(_ secret: String) { self.secret = Array(secret.utf8) }

    /// Reads a token from a file (first line, surrounding whitespace trimmed).
    /// - Throws: a ``ConfigurationError`` naming the file when it is missing or empty.
    public static func load(fromFile path: String) throws(ConfigurationError) -> ClusterToken {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read the token file \(path): check the path and its permissions")
        }
        let text = String(decoding: data, as: UTF8.self)
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            throw ConfigurationError("the token file \(path) is empty: put the cluster token on its first line")
        }
        return ClusterToken(trimmed)
    }

    /// A proof for `purpose` (e.g. `register|<workerId>|<host>`) made now with a fresh nonce.
    public func prove(_ purpose: String, now: Date = Date()) -> TokenProof {
        let nonce = SecureRandom.bytes(16)
        let ts = Int64((now.timeIntervalSince1970 * 1000).rounded())
        return TokenProof(timestampMs: ts, nonce: nonce, mac: mac(purpose: purpose, timestampMs: ts, nonce: nonce))
    }

    /// Whether `proof` was made with this token for `purpose` (constant-time comparison).
    public func verify(_ proof: TokenProof, purpose: String) -> Bool {
        let expected = mac(purpose: purpose, timestampMs: proof.timestampMs, nonce: proof.nonce)
        guard proof.mac.count == expected.count else { return false }
        var diff: UInt8 = 0
        for (a, b) in zip(proof.mac, expected) { diff |= a ^ b }
        return diff == 0
    }

    /// The bearer token of the HTTP API (`Authorization: Bearer …`): an HMAC of a fixed label
    /// under the cluster token, so the cluster token itself never crosses HTTP, and a leaked API
    /// token does not let anyone register a worker. `tts-coordinator api-token` prints it.
    public var apiBearer: String {
        HMACSHA256.authenticate(message: Array("tts-cluster/http-api/v1".utf8), key: secret).hexString
    }

    /// Whether `presented` is ``apiBearer`` (constant-time comparison).
    public func acceptsBearer(_ presented: String) -> Bool {
        let expected = Array(apiBearer.utf8), got = Array(presented.utf8)
        guard expected.count == got.count else { return false }
        var diff: UInt8 = 0
        for (a, b) in zip(expected, got) { diff |= a ^ b }
        return diff == 0
    }

    func mac(purpose: String, timestampMs: Int64, nonce: [UInt8]) -> [UInt8] {
        let message = Array("tts-cluster/v1|\(purpose)|\(timestampMs)|\(nonce.hexString)".utf8)
        return HMACSHA256.authenticate(message: message, key: secret)
    }

    public var description: String { "ClusterToken(<redacted>)" }
    public var debugDescription: String { description }
}

/// The proof of token possession carried by `register` and `admin` requests.
public struct TokenProof: Sendable, Equatable, WireCodable {
    public var timestampMs: Int64
    public var nonce: [UInt8]
    public var mac: [UInt8]

    /// The proof sent when the client has no token (accepted only by an open coordinator).
    public static let none = TokenProof(timestampMs: 0, nonce: [], mac: [])

    public init(timestampMs: Int64, nonce: [UInt8], mac: [UInt8]) {
        self.timestampMs = timestampMs
        self.nonce = nonce
        self.mac = mac
    }

    public init(from r: inout WireReader) throws(WireError) {
        timestampMs = try r.readSigned("proof.timestamp")
        nonce = try r.readBytes("proof.nonce")
        mac = try r.readBytes("proof.mac")
        guard nonce.count <= 64, mac.count <= 64 else {
            throw WireError(field: "proof", reason: .tooLarge(max(nonce.count, mac.count)))
        }
    }

    public func encode(to w: inout WireWriter) {
        w.writeSigned(timestampMs)
        w.writeBytes(nonce)
        w.writeBytes(mac)
    }
}

/// Random bytes from the kernel (`getrandom`).
public enum SecureRandom {
    public static func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var g = SystemRandomNumberGenerator()
        for i in 0..<n { out[i] = UInt8.random(in: 0...255, using: &g) }
        return out
    }

    public static func uint64() -> UInt64 {
        var g = SystemRandomNumberGenerator()
        return g.next()
    }
}
