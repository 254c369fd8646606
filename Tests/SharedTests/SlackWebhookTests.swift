@testable import CurlHTTP
import Foundation
@testable import Shared
@testable import Slack
import Testing
import TestSupport

// MARK: - Classification (no network)

@Suite("Slack webhook: classifying Slack's answers")
struct SlackWebhookClassificationTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var status: Int
        var body: String
        var code: SlackWebhookError.Code
        var disposition: SlackWebhookError.Disposition
        var testDescription: String { "\(status) \(body)" }
    }

    static let refusals: [Case] = [
        Case(status: 400, body: "invalid_payload", code: .invalidPayload, disposition: .dropMessage),
        Case(status: 400, body: "user_not_found", code: .userNotFound, disposition: .dropMessage),
        Case(status: 400, body: "no_text", code: .noText, disposition: .dropMessage),
        Case(status: 403, body: "action_prohibited", code: .actionProhibited, disposition: .disableWebhook),
        Case(status: 403, body: "invalid_token", code: .invalidToken, disposition: .disableWebhook),
        Case(status: 403, body: "posting_to_general_channel_denied", code: .postingToGeneralChannelDenied, disposition: .disableWebhook),
        Case(status: 403, body: "team_disabled", code: .teamDisabled, disposition: .disableWebhook),
        Case(status: 404, body: "channel_not_found", code: .channelNotFound, disposition: .disableWebhook),
        Case(status: 404, body: "no_service", code: .noService, disposition: .disableWebhook),
        // Matched by body, whatever the status (some clients wrongly expect 403 here).
        Case(status: 410, body: "channel_is_archived", code: .channelIsArchived, disposition: .disableWebhook),
        Case(status: 403, body: "channel_is_archived", code: .channelIsArchived, disposition: .disableWebhook),
        Case(status: 404, body: "something new", code: .unexpectedResponse, disposition: .disableWebhook),
        Case(status: 400, body: "something new", code: .unexpectedResponse, disposition: .dropMessage),
        Case(status: 200, body: "not ok", code: .unexpectedResponse, disposition: .dropMessage),
    ]

    @Test("Slack's refusals are permanent, with the right code and a clear message", arguments: refusals)
    func refusal(_ c: Case) throws {
        let outcome = SlackPostOutcome(response: HTTPResponse(status: c.status, body: Array(c.body.utf8)))
        guard case .permanent(let e) = outcome else {
            Issue.record("expected permanent, got \(outcome)")
            return
        }
        #expect(e.code == c.code)
        #expect(e.disposition == c.disposition)
        #expect(!e.isRetryable)
        #expect(e.status == c.status)
        #expect(e.description.contains(c.code.rawValue))
        #expect(e.message.count > 20, "a sentence, not just the code")
    }

    @Test("200 `ok` is delivered; 5xx, 408 and rollup_error are retryable; 429 is a rate limit")
    func deliveredAndRetryable() {
        #expect(SlackPostOutcome(response: HTTPResponse(status: 200, body: Array("ok\n".utf8))) == .delivered)
        for (status, body) in [(500, "rollup_error"), (500, ""), (502, "<html>bad gateway</html>"), (503, "x"), (408, "")] {
            let o = SlackPostOutcome(response: HTTPResponse(status: status, body: Array(body.utf8)))
            #expect(o.error?.isRetryable == true, "\(status) \(body): \(o)")
            if case .retryable = o {} else { Issue.record("\(status): \(o)") }
        }
        let limited = SlackPostOutcome(response: HTTPResponse(status: 429, headers: ["Retry-After": "2"], body: Array("rate_limited".utf8)))
        #expect(limited == .rateLimited(retryAfter: .seconds(2)))
        #expect(limited.error?.code == .rateLimited)
    }

    @Test("network errors are retryable unless a retry cannot fix them")
    func transport() {
        #expect(SlackPostOutcome(error: .transport(code: 7, message: "Couldn't connect to server")).error?.isRetryable == true)
        #expect(SlackPostOutcome(error: .transport(code: 28, message: "Timeout")).error?.isRetryable == true)
        if case .permanent(let e) = SlackPostOutcome(error: .transport(code: 60, message: "SSL certificate problem")) {
            #expect(e.code == .transport)
        } else {
            Issue.record("a certificate problem is permanent")
        }
    }

    @Test("Retry-After: seconds, an HTTP date, or 1 s when missing or unreadable")
    func retryAfter() {
        #expect(SlackPostOutcome.retryAfter("2") == .seconds(2))
        #expect(SlackPostOutcome.retryAfter(" 0.5 ") == .milliseconds(500))
        #expect(SlackPostOutcome.retryAfter(nil) == .seconds(1))
        #expect(SlackPostOutcome.retryAfter("soon") == .seconds(1))
        #expect(SlackPostOutcome.retryAfter("99999") == .seconds(3600))
        let now = Date(timeIntervalSince1970: 1_700_000_000) // Tue, 14 Nov 2023 22:13:20 GMT
        #expect(SlackPostOutcome.retryAfter("Tue, 14 Nov 2023 22:13:50 GMT", now: now) == .seconds(30))
    }

    @Test("the rate limiter spaces POSTs by the interval and a 429 pauses it")
    func rateLimiter() {
        var limiter = SlackRateLimiter(interval: .seconds(1))
        let t0 = ContinuousClock.now
        #expect(limiter.reserve(now: t0) == t0)
        #expect(limiter.reserve(now: t0) == t0 + .seconds(1))
        #expect(limiter.reserve(now: t0 + .milliseconds(200)) == t0 + .seconds(2))
        limiter.pause(until: t0 + .seconds(10))
        #expect(limiter.reserve(now: t0 + .seconds(3)) == t0 + .seconds(10))
        #expect(limiter.reserve(now: t0 + .seconds(30)) == t0 + .seconds(30))
    }
}

// MARK: - Messages

@Suite("Slack webhook: messages")
struct SlackMessageTests {
    static let alert = SlackAlert(
        rule: "loss_spike", status: .firing, severity: "critical", summary: "train/text_loss spiked to 4.1 (2.01× its median 2.04) at step 12345",
        runId: "ko-ft<1>", worker: "box-a-gpu0", step: 12_345, fields: [.init("ratio", "2.01")],
        details: ["Traceback (most recent call last):", "  ..."], wandbURL: "https://wandb.ai/e/p/runs/ko-ft",
        dashboardURL: "http://coordinator:8080/runs/ko-ft")

    @Test("an alert is Block Kit with a plain-text fallback, severity, run, worker, values and both links")
    func alertMessage() throws {
        let m = SlackMessage.alert(Self.alert)
        #expect(m.text == "[CRITICAL] loss_spike · run ko-ft<1>: train/text_loss spiked to 4.1 (2.01× its median 2.04) at step 12345 (worker box-a-gpu0)")
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(m.jsonBody()))
        guard case .object(let o) = json, case .array(let blocks)? = o["blocks"], case .string(let text)? = o["text"] else {
            Issue.record("not {text, blocks}: \(json)")
            return
        }
        #expect(text == m.text)
        let types = blocks.compactMap { if case .object(let b) = $0 { b["type"]?.stringValue } else { nil } }
        #expect(types == ["header", "section", "section", "actions"])
        let body = String(decoding: m.jsonBody(), as: UTF8.self)
        #expect(body.contains("🔴 [CRITICAL] loss_spike"))
        #expect(body.contains("ko-ft&lt;1&gt;"), "run names are escaped for mrkdwn")
        #expect(body.contains("*Worker*\\nbox-a-gpu0") && body.contains("*Step*\\n12345") && body.contains("*ratio*\\n2.01"))
        #expect(body.contains("https://wandb.ai/e/p/runs/ko-ft") && body.contains("http://coordinator:8080/runs/ko-ft"))
    }

    @Test("a resolved alert is marked resolved")
    func resolved() {
        var a = Self.alert
        a.status = .resolved
        #expect(SlackMessage.alert(a).text.hasPrefix("[RESOLVED] loss_spike"))
    }

    @Test("Slack's size limits are applied: section text ≤ 3000, at most 50 blocks")
    func limits() throws {
        let m = SlackMessage(text: String(repeating: "t", count: 10_000),
                             blocks: Array(repeating: .section(text: String(repeating: "x", count: 5_000)), count: 60))
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(m.jsonBody()))
        guard case .object(let o) = json, case .array(let blocks)? = o["blocks"], case .string(let text)? = o["text"],
              case .object(let first) = blocks[0], case .object(let t)? = first["text"], case .string(let s)? = t["text"] else {
            Issue.record("bad shape")
            return
        }
        #expect(blocks.count == 50)
        #expect(s.count == 3_000)
        #expect(text.count == 3_000)
    }
}

// MARK: - The secret URL

@Suite("Slack webhook: the URL never leaks")
struct SlackWebhookSecretTests {
    static let secret = "T0SECRETAA/B0SECRETBB/zzSecretTokenValue42"

    @Test("the URL's descriptions, dump and interpolation show only its origin")
    func urlDescriptions() throws {
        let url = try SlackWebhookURL("https://hooks.slack.com/services/\(Self.secret)")
        var dumped = ""
        dump(url, to: &dumped)
        for text in [url.description, url.debugDescription, "\(url)", String(reflecting: url), dumped] {
            SlackSecret.expectAbsent(Self.secret, in: text)
        }
        #expect(url.description == "https://hooks.slack.com/services/•••")
    }

    @Test("an invalid URL is refused without repeating it")
    func invalidURL() {
        for bad in ["ftp://hooks.slack.com/services/\(Self.secret)", "hooks.slack.com/services/\(Self.secret)", "https://hooks.slack.com/"] {
            do {
                _ = try SlackWebhookURL(bad)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.code == .invalidURL)
                SlackSecret.expectAbsent(Self.secret, in: error.description)
            }
        }
    }

    @Test("no outcome or error says any part of the URL path, even when the server echoes it")
    func outcomesAreRedacted() async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        let url = try SlackWebhookURL(server.baseURL + "/services/" + Self.secret)
        let webhook = SlackWebhook(url: url, client: HTTPClient(configuration: .init(threads: 1)),
                                   configuration: .init(minimumInterval: .milliseconds(10)))
        SlackSecret.expectAbsent(Self.secret, in: webhook.description)
        // Every kind of answer, some echoing the path back.
        try await server.script(#"[{"status": 400, "body": "invalid_payload"}, {"status": 404, "body": "no_service"}, {"status": 410, "body": "channel_is_archived"},"# +
                                #"{"status": 500, "body": "rollup_error"}, {"status": 429, "retry_after": 0}, {"status": 200, "body": "weird"},"# +
                                #"{"status": 400, "body": "bad hook /services/\#(Self.secret)"}, {"status": 502, "body": "\#(Self.secret)"}, {"close": true}]"#)
        var outcomes: [SlackPostOutcome] = []
        for _ in 0..<10 { outcomes.append(await webhook.post(SlackMessage(text: "hello"))) }
        #expect(outcomes.last == .delivered)
        #expect(Set(outcomes.compactMap { $0.error?.code }).count >= 7)
        for o in outcomes {
            SlackSecret.expectAbsent(Self.secret, in: o.description)
            if let e = o.error { SlackSecret.expectAbsent(Self.secret, in: e.description + e.message) }
        }
        // No response at all: a port nobody listens on.
        let deadURL = try SlackWebhookURL("http://127.0.0.1:\(SlackSecret.closedPort())/services/" + Self.secret)
        let dead = SlackWebhook(url: deadURL, client: HTTPClient(configuration: .init(threads: 1)),
                                configuration: .init(maxAttempts: 2, backoffBase: .milliseconds(10), backoffCap: .milliseconds(10)))
        do {
            _ = try await dead.deliver(SlackMessage(text: "x"))
            Issue.record("delivered to a closed port")
        } catch {
            #expect(error.code == .transport && error.isRetryable)
            #expect(error.message.contains("gave up after 2 attempts"))
            SlackSecret.expectAbsent(Self.secret, in: error.description)
        }
    }
}

// MARK: - Against the loopback Slack server

@Suite("Slack webhook: delivery against a loopback Slack server")
struct SlackWebhookTests {
    static func webhook(_ server: MockSlackServer, _ configuration: SlackWebhook.Configuration = .init(backoffBase: .milliseconds(50), backoffCap: .milliseconds(200))) throws -> SlackWebhook {
        SlackWebhook(url: try SlackWebhookURL(server.baseURL + "/services/T000/B000/" + SlackSecret.token()),
                     client: HTTPClient(configuration: .init(threads: 1)), configuration: configuration)
    }

    @Test("200, 429 (Retry-After 2), 500 ×3, 200: every alert delivered exactly once, in order, never faster than 1/s")
    func issueScenario() async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        try await server.script(#"[{"status": 200}, {"status": 429, "retry_after": 2}, {"status": 500, "count": 3, "body": "rollup_error"}, {"status": 200}]"#)
        let webhook = try Self.webhook(server)
        var receipts: [SlackWebhook.Receipt] = []
        for i in 1...3 { receipts.append(try await webhook.deliver(SlackMessage(text: "alert \(i)"))) }
        #expect(receipts.map(\.attempts) == [1, 5, 1])
        #expect(receipts.map(\.rateLimited) == [0, 1, 0])

        let posts = try await server.posts()
        #expect(posts.map(\.status) == [200, 429, 500, 500, 500, 200, 200])
        #expect(posts.filter { $0.status == 200 }.map(\.text) == ["alert 1", "alert 2", "alert 3"], "each once, in order")
        #expect(posts.allSatisfy { $0.contentType == "application/json" })
        let gaps = zip(posts, posts.dropFirst()).map { $1.time - $0.time }
        #expect(gaps.allSatisfy { $0 >= 0.95 }, "never faster than 1/s: \(gaps)")
        #expect(gaps[1] >= 1.95, "Retry-After 2 honoured: \(gaps[1])")
    }

    @Test("invalid_payload is surfaced at once and not retried; the webhook keeps working")
    func invalidPayload() async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        try await server.script(#"[{"status": 400, "body": "invalid_payload"}]"#)
        let webhook = try Self.webhook(server)
        do {
            _ = try await webhook.deliver(SlackMessage(text: "bad"))
            Issue.record("delivered")
        } catch {
            #expect(error.code == .invalidPayload && error.disposition == .dropMessage && error.status == 400)
            #expect(error.description.contains("invalid_payload"))
        }
        _ = try await webhook.deliver(SlackMessage(text: "good"))
        #expect(try await server.posts().map(\.status) == [400, 200], "one POST for the refused message")
    }

    @Test("a removed or archived webhook is reported as such, once", arguments: [(404, "no_service"), (410, "channel_is_archived"), (403, "action_prohibited")])
    func webhookGone(status: Int, body: String) async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        try await server.script(#"[{"status": \#(status), "body": "\#(body)"}]"#)
        let webhook = try Self.webhook(server)
        do {
            _ = try await webhook.deliver(SlackMessage(text: "x"))
            Issue.record("delivered")
        } catch {
            #expect(error.code.rawValue == body && error.disposition == .disableWebhook)
        }
        #expect(try await server.posts().count == 1)
    }

    @Test("retries stop after maxAttempts with the last error")
    func givesUp() async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        try await server.script(#"[{"status": 503, "count": 5}]"#)
        let webhook = try Self.webhook(server, .init(minimumInterval: .milliseconds(20), maxAttempts: 3,
                                                      backoffBase: .milliseconds(10), backoffCap: .milliseconds(20)))
        do {
            _ = try await webhook.deliver(SlackMessage(text: "x"))
            Issue.record("delivered")
        } catch {
            #expect(error.code == .serverError && error.status == 503 && error.isRetryable)
            #expect(error.message.contains("gave up after 3 attempts"))
        }
        #expect(try await server.posts().count == 3)
    }

    @Test("concurrent callers are served one at a time, each POST at least a second after the previous")
    func rateLimitAcrossCallers() async throws {
        let server = try await MockSlackServer.start()
        defer { server.stop() }
        let webhook = try Self.webhook(server)
        await withTaskGroup(of: SlackPostOutcome.self) { group in
            for i in 0..<3 { group.addTask { await webhook.post(SlackMessage(text: "m\(i)")) } }
            for await o in group { #expect(o == .delivered) }
        }
        let posts = try await server.posts()
        #expect(posts.count == 3)
        #expect(Set(posts.compactMap(\.text)) == ["m0", "m1", "m2"])
        let gaps = zip(posts, posts.dropFirst()).map { $1.time - $0.time }
        #expect(gaps.allSatisfy { $0 >= 0.95 }, "\(gaps)")
    }
}

// MARK: - Support

enum SlackSecret {
    /// A fresh random token, so no output could contain it by accident.
    static func token() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<24).map { _ in alphabet.randomElement()! })
    }

    /// Fails when `text` contains the whole secret path or any of its segments.
    static func expectAbsent(_ secretPath: String, in text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for part in [secretPath] + secretPath.split(separator: "/").map(String.init) {
            #expect(!text.contains(part), "the webhook path leaked: \(text)", sourceLocation: sourceLocation)
        }
    }

    /// A loopback port with no listener (bound, then closed).
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
