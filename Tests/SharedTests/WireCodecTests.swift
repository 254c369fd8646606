import Testing
@testable import Shared

@Suite("Wire codec")
struct WireCodecTests {
    @Test("varints round-trip at every width, including the 10-byte maximum")
    func varints() throws {
        for v: UInt64 in [0, 1, 127, 128, 300, 16_383, 16_384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max] {
            var w = WireWriter()
            w.writeVarint(v)
            var r = WireReader(w.bytes)
            #expect(try r.readVarint("v") == v)
            #expect(r.isAtEnd)
        }
        var w = WireWriter()
        w.writeVarint(300)
        #expect(w.bytes == [0xAC, 0x02])
    }

    @Test("signed zig-zag values round-trip")
    func signed() throws {
        for v: Int64 in [0, -1, 1, -64, 64, Int64.min, Int64.max] {
            var w = WireWriter()
            w.writeSigned(v)
            var r = WireReader(w.bytes)
            #expect(try r.readSigned("v") == v)
        }
    }

    @Test("an 11-byte varint is refused, not wrapped")
    func overlongVarint() {
        var r = WireReader([UInt8](repeating: 0xFF, count: 11))
        #expect(throws: WireError.self) { try r.readVarint("x") }
    }

    @Test("a length prefix larger than the buffer is a truncation error naming the field")
    func lyingLength() {
        var w = WireWriter()
        w.writeVarint(1_000)
        w.writeRaw([1, 2, 3])
        var r = WireReader(w.bytes)
        #expect(throws: WireError(field: "name", reason: .truncated)) { try r.readString("name") }
    }

    @Test("invalid UTF-8 in a string field is refused")
    func badUTF8() {
        var r = WireReader([2, 0xC3, 0x28])
        #expect(throws: WireError(field: "s", reason: .invalid("not UTF-8"))) { try r.readString("s") }
    }

    @Test("NaN and infinities survive bit for bit")
    func nonFinite() throws {
        let p = MetricPoint(runId: "r", step: 3, key: "train/text_loss", value: .nan, wallTime: 1.5)
        let back = try MetricPoint.decode(p.wireBytes())
        #expect(back.value.isNaN)
        #expect(back == p)
        let inf = MetricPoint(runId: "r", step: 4, key: "k", value: -.infinity, wallTime: 2)
        #expect(try MetricPoint.decode(inf.wireBytes()).value == -.infinity)
    }

    @Test("every request and reply type round-trips")
    func messagesRoundTrip() throws {
        let device = DeviceInfo(kind: .cuda, index: 1, name: "NVIDIA RTX A6000", memoryBytes: 51_527_024_640, driverVersion: "550.54", cudaVersion: "12.4", uuid: "GPU-1")
        let proof = ClusterToken("t0ken").prove("register|w|h")
        let reg = RegisterRequest(name: "box-a-gpu1", host: "box-a", device: device, capabilities: ["shard:sleep", "shard:echo"], version: "0.1.0", pid: 42, proof: proof, activeShard: ShardRef(shardId: 7, leaseEpoch: 3))
        #expect(try RegisterRequest.decode(reg.wireBytes()) == reg)
        let hb = HeartbeatRequest(status: .busy, progress: ShardProgress(shard: ShardRef(shardId: 1, leaseEpoch: 2), step: 10, totalSteps: 100, stepsPerSecond: 2.5), telemetry: DeviceTelemetry(utilization: 97, memoryUsedBytes: 1, memoryTotalBytes: 2, temperatureC: 70, powerWatts: 250))
        #expect(try HeartbeatRequest.decode(hb.wireBytes()) == hb)
        let hr = HeartbeatReply(commands: [.cancelShard(ShardRef(shardId: 1, leaseEpoch: 2), reason: "cancelled by user"), .drain])
        #expect(try HeartbeatReply.decode(hr.wireBytes()) == hr)
        let pr = PollReply(assignment: ShardAssignment(shard: ShardRef(shardId: 5, leaseEpoch: 9), jobId: 2, kind: "sleep", attempt: 2, payload: Array(#"{"seconds":1}"#.utf8)))
        #expect(try PollReply.decode(pr.wireBytes()) == pr)
        let res = ResultRequest(shard: ShardRef(shardId: 5, leaseEpoch: 9), outcome: .failed, message: "exit 1", output: [], logTail: ["a", "b"])
        #expect(try ResultRequest.decode(res.wireBytes()) == res)
        let ev = EventRequest(kind: .checkpointSaved, shard: nil, message: "step 1000", data: Array("{}".utf8), wallTime: 12.5)
        #expect(try EventRequest.decode(ev.wireBytes()) == ev)
        let err = ProtocolError(.staleLease, "lease moved", retryable: false)
        #expect(try ProtocolError.decode(err.wireBytes()) == err)
    }

    @Test("trailing bytes after a message are refused")
    func trailing() {
        var bytes = PollRequest(waitMs: 5, rendezvous: RendezvousEndpoint(address: "10.0.0.5", port: 29_500)).wireBytes()
        bytes.append(0)
        #expect(throws: WireError.self) { try PollRequest.decode(bytes) }
        var ack = Ack(highestSequence: 3).wireBytes()
        ack.append(0)
        #expect(throws: WireError.self) { try Ack.decode(ack) }
    }

    @Test("a poll from a worker older than gangs (no rendezvous) still decodes; a new one round-trips its rendezvous endpoint")
    func pollRendezvous() throws {
        #expect(try PollRequest.decode(PollRequest(waitMs: 7).wireBytes()) == PollRequest(waitMs: 7, rendezvous: nil))
        let withEndpoint = PollRequest(waitMs: 7, rendezvous: RendezvousEndpoint(address: "10.0.0.5", port: 29_500))
        #expect(try PollRequest.decode(withEndpoint.wireBytes()) == withEndpoint)
    }

    @Test("every prefix of a valid message fails cleanly (never traps)")
    func truncations() {
        let reg = RegisterRequest(name: "n", host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1), capabilities: ["a"], version: "v", pid: 1, proof: .none)
        let bytes = reg.wireBytes()
        for n in 0..<bytes.count {
            #expect(throws: WireError.self) { try RegisterRequest.decode(Array(bytes[0..<n])) }
        }
    }
}

@Suite("Interned strings")
struct InternedStringTests {
    @Test("an interned read returns what a plain read returns, and the same string for the same bytes")
    func sameValueAndReuse() throws {
        let words = ["run-1", "train/text_loss", "train/mel_loss", "a-metric-key-longer-than-fifteen-bytes", "", "ㅎ한국어", "run-1",
                     "a-metric-key-longer-than-fifteen-bytes", "train/text_loss", "train/text_losS"]
        var w = WireWriter()
        for word in words { w.write(word) }
        var interned = WireReader(w.bytes), plain = WireReader(w.bytes)
        var seen: [String] = []
        for word in words {
            let a = try interned.readInternedString("k", table: 0)
            #expect(a == (try plain.readString("k")))
            #expect(a == word)
            seen.append(a)
        }
        #expect(interned.isAtEnd)
        // The second "a-metric-key-…" (a heap string) is the first one's storage, not a copy.
        let long = seen.indices.filter { words[$0].hasPrefix("a-metric") }
        #expect(long.count == 2)
        #expect(seen[long[0]].utf8.withContiguousStorageIfAvailable { $0.baseAddress } ==
                seen[long[1]].utf8.withContiguousStorageIfAvailable { $0.baseAddress })
    }

    @Test("tables are independent, a cycle of keys is found again, and a table stops growing at its limit")
    func tablesAndLimit() throws {
        var w = WireWriter()
        let keys = (0..<(WireReader.maxInterned + 10)).map { "key-\($0)" }
        for round in 0..<3 {
            for k in keys { w.write("run-\(round % 2)"); w.write(k) }
        }
        var r = WireReader(w.bytes)
        for round in 0..<3 {
            for k in keys {
                #expect(try r.readInternedString("run", table: 0) == "run-\(round % 2)")
                #expect(try r.readInternedString("key", table: 1) == k)
            }
        }
        #expect(r.isAtEnd)
    }

    @Test("a truncated interned string is an error naming the field, after the bytes were seen once")
    func truncated() {
        var w = WireWriter()
        w.write("train/loss")
        w.writeVarint(10)
        w.writeRaw(Array("train/".utf8))
        var r = WireReader(w.bytes)
        #expect(throws: Never.self) { try r.readInternedString("metric.key", table: 1) }
        #expect(throws: WireError.self) { try r.readInternedString("metric.key", table: 1) }
    }
}

@Suite("Envelope")
struct EnvelopeTests {
    @Test("round-trips with its header fields")
    func roundTrip() throws {
        let e = Envelope(.poll, PollRequest(waitMs: 1000), workerId: "w-1", session: 99, sequence: 12)
        let d = try Envelope.decode(e.encoded())
        #expect(d == e)
        #expect(try d.decodeBody(PollRequest.self).waitMs == 1000)
    }

    @Test("an unknown version is reported as such before anything else is read")
    func unknownVersion() {
        var bytes = Envelope(type: .heartbeat).encoded()
        bytes[2] = 9
        #expect(throws: Envelope.DecodeFailure.unsupportedVersion(9)) { try Envelope.decode(bytes) }
    }

    @Test("garbage, empty and truncated envelopes are refused with a reason")
    func garbage() {
        #expect(throws: Envelope.DecodeFailure.notAnEnvelope) { try Envelope.decode([]) }
        #expect(throws: Envelope.DecodeFailure.notAnEnvelope) { try Envelope.decode(Array("GET / HTTP/1.1".utf8)) }
        #expect(throws: Envelope.DecodeFailure.unknownType(0x42)) { try Envelope.decode([0x54, 0x43, 1, 0x42]) }
        let full = Envelope(type: .heartbeat, workerId: "worker-abc", session: 1, sequence: 2).encoded()
        #expect(throws: Envelope.DecodeFailure.self) { try Envelope.decode(Array(full[0..<7])) }
    }
}
