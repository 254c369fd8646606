import FuzzSupport
import Shared

/// Fuzzes the coordinator's decoder of incoming bytes: ``Envelope/decode(_:)``, then the body as
/// the type the envelope names (requests and replies alike).
///
/// Beyond "does not crash": a decoded envelope re-encodes to bytes that decode to the same
/// envelope; a decoded body re-encodes canonically (re-encoding what that decodes to gives the
/// same bytes again) in no more bytes than it was read from; and a failure is the typed error
/// for what is wrong with the frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    let envelope: Envelope
    do {
        envelope = try Envelope.decode(bytes)
    } catch {
        checkRefusal(error, bytes)
        return 0
    }
    FuzzCheck.require(envelope.version == Envelope.currentVersion, "decoded an envelope of version \(envelope.version)")
    let again: Envelope
    do { again = try Envelope.decode(envelope.encoded()) } catch {
        FuzzCheck.require(false, "a re-encoded envelope does not decode: \(error)")
        return 0
    }
    FuzzCheck.require(again == envelope, "the envelope changed across encode → decode")
    FuzzCheck.require(envelope.encoded().count <= bytes.count, "the canonical envelope is longer than its input")
    checkBody(envelope)
    return 0
}

/// The refusal must match what is wrong with the frame's fixed header.
func checkRefusal(_ error: Envelope.DecodeFailure, _ bytes: [UInt8]) {
    let magic = bytes.count >= 4 && bytes[0] == Envelope.magic.0 && bytes[1] == Envelope.magic.1
    switch error {
    case .notAnEnvelope:
        FuzzCheck.require(!magic, "a frame with the magic bytes was refused as not an envelope")
    case .unsupportedVersion(let v):
        FuzzCheck.require(magic && v == bytes[2] && v != Envelope.currentVersion, "wrong version refusal \(v)")
    case .unknownType(let t):
        FuzzCheck.require(magic && MessageType(rawValue: t) == nil, "type \(t) refused as unknown")
    case .malformed(let wire):
        FuzzCheck.require(magic && MessageType(rawValue: bytes[3]) != nil, "malformed refusal of a bad header")
        FuzzCheck.require(wire.field.hasPrefix("envelope."), "an envelope error names \(wire.field)")
    }
}

/// Decodes the body as the envelope's type and checks the canonical round trip.
func checkBody(_ envelope: Envelope) {
    let body = envelope.body
    switch envelope.type {
    case .register: roundTrip(RegisterRequest.self, body)
    case .heartbeat: roundTrip(HeartbeatRequest.self, body)
    case .poll: roundTrip(PollRequest.self, body)
    case .metrics:
        let decoded = roundTrip(MetricsRequest.self, body)
        // The worker's pass-through form must read exactly the same messages.
        let encoded = roundTrip(EncodedMetricsRequest.self, body)
        FuzzCheck.require((decoded == nil) == (encoded == nil), "MetricsRequest and EncodedMetricsRequest disagree on validity")
        if let decoded, let encoded {
            FuzzCheck.require(decoded.wireBytes() == encoded.wireBytes(), "EncodedMetricsRequest re-encodes differently")
        }
    case .event: roundTrip(EventRequest.self, body)
    case .result: roundTrip(ResultRequest.self, body)
    case .admin: roundTrip(AdminRequest.self, body)
    case .registered: roundTrip(RegisterReply.self, body)
    case .heartbeatReply: roundTrip(HeartbeatReply.self, body)
    case .pollReply: roundTrip(PollReply.self, body)
    case .metricsAck, .eventAck, .resultAck: roundTrip(Ack.self, body)
    case .adminReply: roundTrip(AdminReply.self, body)
    case .error: roundTrip(ProtocolError.self, body)
    }
}

/// decode → encode → decode → encode: both encodings are equal (compared as bytes, so a carried
/// NaN counts as equal) and no longer than the input. Returns the decoded value, or nil when the
/// body was refused with a ``WireError``.
@discardableResult
func roundTrip<M: WireCodable>(_: M.Type, _ body: [UInt8]) -> M? {
    let value: M
    do { value = try M.decode(body) } catch {
        FuzzCheck.require(!error.field.isEmpty, "a WireError names no field")
        return nil
    }
    let first = value.wireBytes()
    FuzzCheck.require(first.count <= body.count, "\(M.self): canonical encoding (\(first.count) B) longer than the input (\(body.count) B)")
    let second: [UInt8]
    do { second = try M.decode(first).wireBytes() } catch {
        FuzzCheck.require(false, "\(M.self): a re-encoded value does not decode: \(error)")
        return nil
    }
    FuzzCheck.require(first == second, "\(M.self): encode → decode → encode changed the bytes")
    return value
}

/// The executable's entry point (SwiftPM links `FuzzWireDecoder_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzWireDecoder_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
