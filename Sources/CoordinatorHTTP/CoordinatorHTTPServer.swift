import Coordinator
import Foundation
import Hummingbird
import Logging
import NIOCore
import Shared

/// Where and how the coordinator serves HTTP.
public struct HTTPServerConfiguration: Sendable {
    /// `127.0.0.1` by default; anything else requires a cluster token (bearer auth).
    public var host: String
    /// 8080 by default; 0 picks a free port (tests).
    public var port: Int
    /// The cluster token; its ``ClusterToken/apiBearer`` is the API's bearer token.
    public var token: ClusterToken?
    /// Largest request body (job specs, eval requests): 1 MiB.
    public var maxBodyBytes: Int
    /// The W&B app's base URL for run links (online mode), e.g. `https://wandb.ai`.
    public var wandbBase: String?

    public init(host: String = "127.0.0.1", port: Int = 8080, token: ClusterToken? = nil, maxBodyBytes: Int = 1 << 20, wandbBase: String? = nil) {
        self.host = host
        self.port = port
        self.token = token
        self.maxBodyBytes = maxBodyBytes
        self.wandbBase = wandbBase
    }

    /// Parses `HOST:PORT` (`[::1]:8080` for IPv6).
    public static func parse(address: String) throws(ConfigurationError) -> (host: String, port: Int) {
        var host = address, port = "8080"
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            host = String(address[address.index(after: address.startIndex)..<close])
            let rest = address[address.index(after: close)...]
            if rest.hasPrefix(":") { port = String(rest.dropFirst()) }
        } else if let colon = address.lastIndex(of: ":") {
            host = String(address[..<colon])
            port = String(address[address.index(after: colon)...])
        }
        guard !host.isEmpty, let p = Int(port), (0...65_535).contains(p) else {
            throw ConfigurationError("--http \(address) is not HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8080)")
        }
        return (host, p)
    }

    /// Whether `host` only accepts connections from this machine.
    public var isLoopback: Bool { ["127.0.0.1", "localhost", "::1"].contains(host) || host.hasPrefix("127.") }
}

/// The coordinator's HTTP server (Hummingbird): the REST API under `/api/v1`, the dashboard,
/// Prometheus `/metrics`, `/healthz` and `/readyz`, over the same store and admin code as the
/// NNG side.
public final class CoordinatorHTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    public let exporter: PrometheusExporter
    let server: CoordinatorServer
    let logger: Logger

    /// - Throws: ``ConfigurationError`` when the address is beyond loopback and there is no
    ///   token (an open API on the network could cancel anyone's runs).
    public init(server: CoordinatorServer, configuration: HTTPServerConfiguration, logger: Logger) throws(ConfigurationError) {
        if !configuration.isLoopback && configuration.token == nil {
            throw ConfigurationError("the HTTP API on \(configuration.host) (beyond loopback) needs a cluster token for bearer auth: pass --token-file FILE, or bind --http 127.0.0.1:\(configuration.port)")
        }
        self.server = server
        self.configuration = configuration
        self.logger = logger
        exporter = PrometheusExporter(store: server.store, wandbEnabled: server.configuration.wandbMode != .disabled)
        server.ingestObservers.add { [exporter] in exporter.record($0) }
    }

    /// Whether the dashboard pages (read-only HTML) are open: on loopback only. With a cluster
    /// token the API and `/metrics` always need the bearer token (a local user must not cancel
    /// someone's run any more than over NNG, where the token is required too); off loopback the
    /// dashboard needs it as well (reach it through an SSH tunnel to the loopback address, or a
    /// proxy that adds the header).
    var dashboardOpen: Bool { configuration.isLoopback }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        // Middlewares first: Hummingbird wraps each route when it is added.
        router.add(middleware: RequestCountingMiddleware(exporter: exporter))
        router.add(middleware: APIErrorMiddleware())
        if let token = configuration.token { router.add(middleware: BearerAuthMiddleware(token: token, dashboardOpen: dashboardOpen)) }
        router.get("healthz") { _, _ in try APIRoutes.json(["status": "ok"]) }
        router.get("readyz") { [server] _, _ in
            guard server.isListening else { throw APIError(.serviceUnavailable, "unavailable", "the NNG listener is not up yet") }
            do { _ = try server.store.counts() } catch {
                throw APIError(.serviceUnavailable, "unavailable", "the database cannot be read: \(error)")
            }
            return try APIRoutes.json(["status": "ready"])
        }
        router.get("metrics") { [exporter] _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: try exporter.render())))
        }
        APIRoutes(server: server, maxBodyBytes: configuration.maxBodyBytes).register(on: router)
        DashboardRoutes(server: server, wandbBase: configuration.wandbBase).register(on: router)
        return router
    }

    /// Serves until the task is cancelled. `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let logger = self.logger
        let auth = configuration.token != nil
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tts-coordinator"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.notice("HTTP: dashboard and API on http://\(channel.localAddress?.ipAddress ?? "?"):\(port)/\(auth ? " (API bearer token required)" : "")")
                onListening(port)
            },
            logger: Self.quiet(logger))
        try await app.run()
    }

    /// Hummingbird logs every request at info and a cancelled child channel as an error at every
    /// normal shutdown; its own messages are kept for critical ones (failures to serve are thrown
    /// and reported by the coordinator).
    static func quiet(_ logger: Logger) -> Logger {
        var l = logger
        l.logLevel = .critical
        return l
    }
}

/// Counts requests by method and status for `/metrics`.
struct RequestCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let exporter: PrometheusExporter
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        exporter.recordRequest(method: request.method.rawValue, status: response.status.code)
        return response
    }
}
