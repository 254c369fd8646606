import Foundation

/// A second host for network tests: a network namespace joined to this one by a veth pair, with
/// an address of its own on a /30 link (addresses from 198.51.100.0/24, a documentation range
/// that is never routed anywhere: the link exists only between the two namespaces).
///
/// ``cut()`` takes the link down (a partition: packets on it are lost, neither side is told),
/// ``heal()`` brings it back. Needs root and iproute2 (`scripts/test.sh` installs it); a machine
/// that cannot make namespaces fails the test with the command's own error, never skips it.
final class TestHost: Sendable {
    /// The namespace's name (`ip netns exec NAME …` runs a program on this host).
    let namespace: String
    /// This host's address, as the other side sees it.
    let address: String
    /// The address of the test's own side of the link (where a server for this host listens).
    let gateway: String
    private let outerLink: String

    init(index: Int = 0) throws {
        let tag = "\(getpid() % 100_000)\(index)"
        namespace = "tts-it-\(tag)"
        outerLink = "ttsv\(tag)"
        let innerLink = "ttsp\(tag)"
        let base = 4 * (index % 60)
        gateway = "198.51.100.\(base + 1)"
        address = "198.51.100.\(base + 2)"
        // Leftovers of an earlier run that was killed (same pid and index) would block the names.
        _ = try? Self.ip(["netns", "del", namespace])
        _ = try? Self.ip(["link", "del", outerLink])
        do {
            try Self.ip(["netns", "add", namespace])
            try Self.ip(["link", "add", outerLink, "type", "veth", "peer", "name", innerLink])
            try Self.ip(["link", "set", innerLink, "netns", namespace])
            try Self.ip(["addr", "add", "\(gateway)/30", "dev", outerLink])
            try Self.ip(["link", "set", outerLink, "up"])
            try Self.ip(["-n", namespace, "addr", "add", "\(address)/30", "dev", innerLink])
            try Self.ip(["-n", namespace, "link", "set", innerLink, "up"])
            try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// The command prefix that runs a program on this host.
    var run: [String] { ["/usr/sbin/ip", "netns", "exec", namespace] }

    /// Partitions the host: the link goes down, whatever is in flight is lost.
    func cut() throws { try Self.ip(["link", "set", outerLink, "down"]) }

    /// Ends the partition.
    func heal() throws { try Self.ip(["link", "set", outerLink, "up"]) }

    /// Removes the namespace and the link (idempotent).
    func remove() {
        _ = try? Self.ip(["link", "del", outerLink])
        _ = try? Self.ip(["netns", "del", namespace])
    }

    /// Runs `ip ARGS`; throws with its error output when it fails.
    @discardableResult
    static func ip(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do {
            try p.run()
        } catch {
            throw HarnessError("cannot run /usr/sbin/ip (\(error)): install iproute2 (scripts/test.sh does)")
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw HarnessError("`ip \(args.joined(separator: " "))` failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self)) — network tests need root and network namespaces")
        }
        return String(decoding: o, as: UTF8.self)
    }
}
