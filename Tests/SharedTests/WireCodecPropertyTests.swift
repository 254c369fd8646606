@testable import Shared
import Testing
import TestSupport

/// Properties of the wire codec over seeded random messages of every type (see ``WireSample``):
/// round trips are byte-exact, every truncation is refused as truncated, every single-byte
/// mutation is refused or decodes to a canonical message, and the envelope refuses bad headers
/// with the precise reason. A failure names its seed.
@Suite("Wire codec properties")
struct WireCodecPropertyTests {
    static let seeds: [UInt64] = Array(1...40)

    @Test("random valid messages of every type round-trip byte for byte, alone and inside an envelope", arguments: seeds)
    func roundTrip(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        for _ in 0..<10 {
            for s in WireSample.all(&g) {
                #expect(try s.reencode(s.bytes) == s.bytes, "seed \(seed): \(s.type) did not round-trip")
                let type = MessageType.allCases.randomElement(using: &g)!
                let workerId = g.string(maxLength: 40) // at most 160 bytes: under the 256-byte limit
                let envelope = Envelope(type: type, workerId: workerId, session: g.uint64(), sequence: g.uint64(), body: s.bytes)
                let decoded = try Envelope.decode(envelope.encoded())
                #expect(decoded == envelope, "seed \(seed): envelope of \(s.type) changed")
                #expect(try s.reencode(decoded.body) == s.bytes)
            }
        }
    }

    @Test("every truncation of a valid message is refused as truncated, naming a field", arguments: seeds)
    func truncations(seed: UInt64) {
        var g = PropertyRandom(seed: seed)
        for s in WireSample.all(&g) {
            for k in 0..<s.bytes.count where k != s.olderFormLength { // that prefix is an older sender's whole message
                do {
                    _ = try s.reencode(Array(s.bytes.prefix(k)))
                    Issue.record("seed \(seed): \(s.type) cut to \(k) of \(s.bytes.count) bytes was accepted")
                } catch {
                    #expect(error.reason == .truncated && !error.field.isEmpty, "seed \(seed): \(s.type) cut to \(k): \(error)")
                }
            }
        }
    }

    @Test("every single-byte mutation is refused with a WireError or decodes to a canonical, different message", arguments: seeds)
    func mutations(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        var accepted = 0, refused = 0
        for s in WireSample.all(&g) {
            for i in 0..<s.bytes.count {
                var mutated = s.bytes
                mutated[i] ^= UInt8.random(in: 1...255, using: &g)
                let first: [UInt8]
                do { first = try s.reencode(mutated) } catch {
                    #expect(!error.field.isEmpty)
                    refused += 1
                    continue
                }
                accepted += 1
                // What was accepted is a message: its encoding is canonical (a fixed point).
                #expect(try s.reencode(first) == first, "seed \(seed): \(s.type) mutated at \(i) re-encodes unstably")
                #expect(first.count <= mutated.count)
                if s.injective {
                    #expect(first != s.bytes, "seed \(seed): \(s.type) mutated at byte \(i) decodes to the original message")
                }
            }
        }
        #expect(accepted + refused > 0)
    }

    @Test("the envelope refuses a short frame, a bad magic, another version or an unknown type, precisely")
    func envelopeHeader() throws {
        let body = HeartbeatRequest(status: .idle).wireBytes()
        let valid = Envelope(.heartbeat, HeartbeatRequest(status: .idle), workerId: "w", session: 300, sequence: 2).encoded()
        for k in 0..<4 {
            #expect(throws: Envelope.DecodeFailure.notAnEnvelope) { try Envelope.decode(Array(valid.prefix(k))) }
        }
        let headerEnd = valid.count - body.count
        #expect(try Envelope.decode(Array(valid.prefix(headerEnd))).body.isEmpty, "a frame of only a header has an empty body")
        for k in 4..<headerEnd {
            // Cut inside workerId, session or sequence: malformed, naming the envelope field.
            do {
                let e = try Envelope.decode(Array(valid.prefix(k)))
                Issue.record("a frame cut to \(k) bytes decoded: \(e)")
            } catch {
                guard case .malformed(let wire) = error else { Issue.record("cut to \(k): \(error)"); continue }
                #expect(wire.field.hasPrefix("envelope.") && wire.reason == .truncated)
            }
        }
        for v in UInt8.min...UInt8.max where v != Envelope.currentVersion {
            var b = valid
            b[2] = v
            #expect(throws: Envelope.DecodeFailure.unsupportedVersion(v)) { try Envelope.decode(b) }
        }
        for t in UInt8.min...UInt8.max where MessageType(rawValue: t) == nil {
            var b = valid
            b[3] = t
            #expect(throws: Envelope.DecodeFailure.unknownType(t)) { try Envelope.decode(b) }
        }
        var b = valid
        b[0] = 0
        #expect(throws: Envelope.DecodeFailure.notAnEnvelope) { try Envelope.decode(b) }
    }
}
