import CurlHTTP
import Foundation
import Hummingbird
import Shared
import WandB

/// An error answer of the REST API: an HTTP status, a stable machine-readable `code` and a
/// message for humans. Sent as `{"error": {"code": "...", "message": "..."}}`.
///
/// Codes (stable; new ones may be added): `bad_request`, `invalid_json`, `invalid_spec`,
/// `unauthorized`, `not_found`, `method_not_allowed`, `payload_too_large`,
/// `unsupported_media_type`, `unavailable`, `internal`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func notFound(_ what: String) -> APIError { APIError(.notFound, "not_found", what) }
    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }

    /// The REST form of a coordinator error.
    init(_ e: ProtocolError) {
        switch e.code {
        case .notFound: self.init(.notFound, "not_found", e.message)
        case .invalidRequest, .malformed: self.init(.badRequest, "bad_request", e.message)
        case .unauthorized: self.init(.unauthorized, "unauthorized", e.message)
        case .tooLarge: self.init(.contentTooLarge, "payload_too_large", e.message)
        case .unavailable: self.init(.serviceUnavailable, "unavailable", e.message)
        default: self.init(.internalServerError, "internal", e.message)
        }
    }

    /// The JSON body.
    var body: [UInt8] {
        Array(#"{"error":{"code":\#(WandbValue.quote(code)),"message":\#(WandbValue.quote(message))}}"#.utf8)
    }

    /// The response.
    var response: Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = #"Bearer realm="tts-cluster""# }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every error a route throws into an ``APIError`` JSON answer (Hummingbird's own
/// `HTTPError`s keep their status), so no request ever gets an empty 500.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return e.response
        } catch let e as ProtocolError {
            return APIError(e).response
        } catch let e as Hummingbird.HTTPError {
            let code: String = switch e.status {
            case .notFound: "not_found"
            case .contentTooLarge: "payload_too_large"
            case .methodNotAllowed: "method_not_allowed"
            case .unauthorized: "unauthorized"
            case .badRequest: "bad_request"
            default: e.status.code >= 500 ? "internal" : "bad_request"
            }
            let message = e.body ?? (e.status == .notFound ? "no such endpoint: \(request.method) \(request.uri.path); see docs/API.md" : e.status.reasonPhrase)
            return APIError(e.status, code, message).response
        } catch {
            context.logger.error("HTTP \(request.method) \(request.uri.path) failed: \(error)")
            return APIError(.internalServerError, "internal", "\(error)").response
        }
    }
}
