import CNNG

/// TLS settings for a `tls+tcp://` endpoint (TLS 1.2 through nng's mbedTLS engine).
///
/// - A listener needs `certificateKeyFile` (certificate and private key in one PEM file); with
///   `caFile` set as well it also requires clients to present a certificate signed by that CA.
/// - A dialer needs `caFile` to verify the coordinator and `serverName` matching its certificate.
public struct NNGTLSConfiguration: Sendable, Equatable {
    public var certificateKeyFile: String?
    public var caFile: String?
    public var serverName: String?

    public init(certificateKeyFile: String? = nil, caFile: String? = nil, serverName: String? = nil) {
        self.certificateKeyFile = certificateKeyFile
        self.caFile = caFile
        self.serverName = serverName
    }

    enum Mode { case client, server }

    /// Builds an nng TLS configuration; the caller attaches it then frees its reference.
    func make(_ mode: Mode) throws(NNGError) -> OpaquePointer {
        var cfg: OpaquePointer?
        try NNGError.check(
            nng_tls_config_alloc(&cfg, mode == .server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT),
            "allocate TLS configuration")
        guard let cfg else { throw NNGError(code: .outOfMemory, operation: "allocate TLS configuration") }
        do throws(NNGError) {
            if let file = certificateKeyFile {
                try NNGError.check(nng_tls_config_cert_key_file(cfg, file, nil), "load TLS certificate and key from \(file)")
            }
            if let ca = caFile {
                try NNGError.check(nng_tls_config_ca_file(cfg, ca), "load TLS CA file \(ca)")
                try NNGError.check(nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED), "require TLS peer verification")
            } else if mode == .server {
                try NNGError.check(nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE), "set TLS auth mode")
            }
            if let name = serverName {
                try NNGError.check(nng_tls_config_server_name(cfg, name), "set TLS server name")
            }
        } catch {
            nng_tls_config_free(cfg)
            throw error
        }
        return cfg
    }
}
