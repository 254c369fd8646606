import Hummingbird
import Shared

/// Requires `Authorization: Bearer <token>` (the cluster token's ``ClusterToken/apiBearer``) on
/// every path except the health probes and, when `dashboardOpen`, the dashboard's HTML pages
/// (everything outside `/api/` and `/metrics`). Installed whenever the coordinator has a token.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: ClusterToken
    let dashboardOpen: Bool
    /// Paths answered without a token (liveness and readiness probes carry no secrets).
    static var openPaths: Set<String> { ["/healthz", "/readyz"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if Self.openPaths.contains(path) { return try await next(request, context) }
        if dashboardOpen, !path.hasPrefix("/api/"), path != "/metrics" { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "unauthorized", "this coordinator requires Authorization: Bearer <token> (print it with `tts-coordinator api-token --token-file FILE`)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer", token.acceptsBearer(String(parts[1]).trimmingCharacters(in: .whitespaces)) else {
            throw APIError(.unauthorized, "unauthorized", "the bearer token is not this cluster's (print it with `tts-coordinator api-token --token-file FILE`)")
        }
        return try await next(request, context)
    }
}
