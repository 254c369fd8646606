import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The address and free port a worker offers, with each poll, for a data-parallel gang's
/// rendezvous should it become rank 0 (torch.distributed's TCPStore listens there).
///
/// The port is found as torchrun's `--standalone` finds one: bind a TCP socket to port 0 on the
/// address, read the port the kernel chose, close the socket. Another process could take it
/// before the trainer binds it; the trainer then fails at start-up with "address already in
/// use" and the gang is restarted, as torchrun's users see.
enum RendezvousPort {
    /// A port free on `address` now (IPv4 dotted or IPv6 literal), or nil when none can be bound.
    static func free(on address: String) -> Int? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address, "0", &hints, &result) == 0, let info = result else { return nil }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { p -> Int in
            if family == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// The local address this host uses to reach `host` (the coordinator's): what the other
    /// ranks of a gang can reach it at, as seen from the coordinator's network. A UDP socket is
    /// "connected" to the host (no packet is sent) and its local address read. `127.0.0.1` for a
    /// loopback or unresolvable host.
    static func localAddress(towards host: String) -> String {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_family = AF_INET
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "9", &hints, &result) == 0, let info = result else { return "127.0.0.1" }
        defer { freeaddrinfo(result) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return "127.0.0.1" }
        defer { close(fd) }
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { return "127.0.0.1" }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard named == 0 else { return "127.0.0.1" }
        var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &local.sin_addr, &buffer, socklen_t(buffer.count)) != nil else { return "127.0.0.1" }
        return String(cString: buffer)
    }

    /// The network interface that holds `address` (IPv4), e.g. `eth0`; nil when none does (or
    /// for a loopback address, where torch's own choice already works).
    static func interface(holding address: String) -> String? {
        guard !address.hasPrefix("127."), address != "::1" else { return nil }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr, Int32(sa.pointee.sa_family) == AF_INET else { continue }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            let ok = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin -> Bool in
                var a = sin.pointee.sin_addr
                return inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil
            }
            if ok, String(cString: text) == address { return String(cString: entry.pointee.ifa_name) }
        }
        return nil
    }

    /// The host part of a coordinator URL (`tcp://10.0.0.2:5555` → `10.0.0.2`; `[::1]` → `::1`);
    /// nil for a URL without a network host (`ipc://`, `inproc://`).
    static func host(ofCoordinator url: String) -> String? {
        guard let scheme = url.range(of: "://"), url.hasPrefix("tcp") || url.hasPrefix("tls") else { return nil }
        var rest = String(url[scheme.upperBound...])
        if rest.hasPrefix("[") , let close = rest.firstIndex(of: "]") { return String(rest[rest.index(after: rest.startIndex)..<close]) }
        if let colon = rest.lastIndex(of: ":") { rest = String(rest[..<colon]) }
        return rest.isEmpty || rest == "*" ? nil : rest
    }
}
