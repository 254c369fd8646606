import Foundation
import Logging
import Shared

/// Why a worker stops for good (as opposed to waiting and retrying).
public struct WorkerFatalError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The worker's side of the wire: its session, sequence numbers, registration (and
/// re-registration when the coordinator forgets the session), and requests with retries.
public actor CoordinatorConnection {
    private let requester: NNGRequester
    private let workerId: String
    private let token: ClusterToken?
    private let logger: Logger
    private let makeRegistration: @Sendable () -> RegisterRequest
    private let requestTimeoutMs: Int
    private var session: UInt64 = 0
    private var nextSequence: UInt64 = 1
    private var registering: Task<RegisterReply, any Error>?
    /// Called after every successful registration with its reply.
    private var onRegistered: (@Sendable (RegisterReply) async -> Void)?

    public init(
        configuration: WorkerConfiguration, workerId: String, logger: Logger,
        makeRegistration: @escaping @Sendable () -> RegisterRequest
    ) throws(NNGError) {
        requester = try NNGRequester(url: configuration.coordinator, tls: configuration.tls)
        self.workerId = workerId
        token = configuration.token
        self.logger = logger
        self.makeRegistration = makeRegistration
        requestTimeoutMs = configuration.requestTimeoutMs
    }

    public func setOnRegistered(_ f: @escaping @Sendable (RegisterReply) async -> Void) { onRegistered = f }

    public func close() { requester.close() }

    /// Drops the connection to the coordinator so that it is dialed again (see
    /// ``NNGRequester/dropConnections()``). Returns how many connections were closed.
    @discardableResult
    public func redial() -> Int { requester.dropConnections() }

    /// The current session, registering first when there is none.
    public func currentSession() async throws -> UInt64 {
        if session != 0 { return session }
        return try await register().session
    }

    /// Registers (once, shared by concurrent callers), retrying with backoff while the
    /// coordinator is unreachable. Throws ``WorkerFatalError`` when the coordinator refuses us.
    @discardableResult
    public func register() async throws -> RegisterReply {
        if let t = registering { return try await t.value }
        let t = Task { try await self.registerLoop() }
        registering = t
        defer { registering = nil }
        // Cancelling the caller (a drain before the first registration) stops the attempts.
        let reply = try await withTaskCancellationHandler { try await t.value } onCancel: { t.cancel() }
        session = reply.session
        if let f = onRegistered { await f(reply) }
        return reply
    }

    private func registerLoop() async throws -> RegisterReply {
        var backoff = Backoff(baseMs: 200, capMs: 5_000)
        var warned = false
        while true {
            try Task.checkCancellation()
            var reg = makeRegistration()
            reg.proof = token?.prove("register|\(workerId)|\(reg.host)") ?? .none
            let env = Envelope(.register, reg, workerId: workerId)
            do {
                let reply: RegisterReply = try await exchange(env, expect: .registered, timeoutMs: requestTimeoutMs)
                if warned { logger.notice("reached the coordinator at \(requester.url)") }
                return reply
            } catch let e as ProtocolError where e.code == .unauthorized || e.code == .unsupportedVersion || e.code == .invalidRequest {
                throw WorkerFatalError("the coordinator refused this worker: \(e.message)")
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if !warned {
                    let hint = requester.url.hasPrefix("tls+") ? " (for TLS check --tls-ca and --tls-server-name: the name must match a DNS name in the coordinator's certificate)" : ""
                    logger.warning("cannot register with the coordinator at \(requester.url) (\(error))\(hint); retrying with backoff")
                    warned = true
                }
                try await Task.sleep(for: .milliseconds(backoff.nextDelayMs()))
            }
        }
    }

    /// Forgets `failed` if it is still the current session (the coordinator said it is unknown).
    public func invalidate(session failed: UInt64) {
        if session == failed { session = 0 }
    }

    /// Allocates the next sequence number of the current session.
    public func allocateSequence() -> UInt64 {
        defer { nextSequence += 1 }
        return nextSequence
    }

    /// One attempt: sends `body` as `type` under the current session and decodes the reply.
    /// - Throws: ``ProtocolError`` for an error reply (after forgetting an unknown session),
    ///   ``NNGError`` for transport failures.
    public func call<Body: WireCodable, Reply: WireCodable>(
        _ type: MessageType, _ body: Body, expect: MessageType, sequence: UInt64? = nil, timeoutMs: Int? = nil
    ) async throws -> (Reply, session: UInt64) {
        let s = try await currentSession()
        let seq = sequence ?? allocateSequence()
        let env = Envelope(type, body, workerId: workerId, session: s, sequence: seq)
        do {
            let reply: Reply = try await exchange(env, expect: expect, timeoutMs: timeoutMs ?? requestTimeoutMs)
            return (reply, s)
        } catch let e as ProtocolError where e.code == .unknownSession {
            invalidate(session: s)
            throw e
        }
    }

    /// Sends an envelope and decodes the reply, without holding the actor while waiting.
    nonisolated func exchange<Reply: WireCodable>(_ env: Envelope, expect: MessageType, timeoutMs: Int) async throws -> Reply {
        let bytes = try await requester.request(env.encoded(), timeoutMs: timeoutMs)
        let reply: Envelope
        do {
            reply = try Envelope.decode(bytes)
        } catch {
            throw ProtocolError(.malformed, "the coordinator sent an unreadable reply: \(error)")
        }
        if reply.type == .error {
            throw (try? reply.decodeBody(ProtocolError.self)) ?? ProtocolError(.malformed, "unreadable error reply")
        }
        guard reply.type == expect else {
            throw ProtocolError(.malformed, "expected \(expect), got \(reply.type)")
        }
        do {
            return try reply.decodeBody(Reply.self)
        } catch {
            throw ProtocolError(.malformed, "unreadable \(expect): \(error)")
        }
    }

    /// Sends a durable request (`metrics`, `event`, `result`) until the coordinator acknowledges
    /// it, retrying with the same sequence within a session (so duplicates are recognised) and a
    /// new one after re-registration. Gives up only when cancelled.
    public func deliver<Body: WireCodable>(_ type: MessageType, _ body: Body, expect: MessageType) async throws -> Ack {
        var backoff = Backoff(baseMs: 100, capMs: 5_000)
        var pinned: (session: UInt64, sequence: UInt64)?
        var warned = false
        while true {
            try Task.checkCancellation()
            let s = try await currentSession()
            if pinned?.session != s { pinned = (s, allocateSequence()) }
            do {
                let (ack, _): (Ack, UInt64) = try await call(type, body, expect: expect, sequence: pinned!.sequence)
                if warned { logger.notice("delivered \(type) after retries") }
                return ack
            } catch let e as ProtocolError where e.code == .unknownSession {
                continue // re-registers on the next turn
            } catch let e as ProtocolError where !e.retryable {
                throw e
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                if !warned {
                    logger.warning("could not deliver \(type) (\(error)); retrying")
                    warned = true
                }
                try await Task.sleep(for: .milliseconds(backoff.nextDelayMs()))
            }
        }
    }
}
