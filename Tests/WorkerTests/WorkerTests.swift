import Foundation
import Testing
@testable import Shared
@testable import Worker

@Suite("Worker identity and device probe")
struct WorkerIdentityTests {
    func tempDir() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("tts-w-\(UUID().uuidString.prefix(8))").path
    }

    @Test("the identity is created once and kept across restarts")
    func identityPersists() throws {
        let dir = tempDir()
        let a = try WorkerIdentity.load(directory: dir)
        let b = try WorkerIdentity.load(directory: dir)
        #expect(a == b)
        #expect(a.hasPrefix("w-"))
        #expect(try WorkerIdentity.load(directory: tempDir()) != a)
    }

    @Test("an unusable state directory is reported by path")
    func badDirectory() {
        #expect(throws: ConfigurationError.self) { try WorkerIdentity.load(directory: "/proc/no-such/dir") }
    }

    @Test("without NVML the worker reports the CPU")
    func cpuFallback() {
        let (probe, note) = DeviceProbes.make(gpuIndex: 0, nvmlLibrary: "/nonexistent/libnvidia-ml.so.1")
        #expect(probe.describe().kind == .cpu)
        #expect(probe.describe().memoryBytes > 0)
        #expect(note.contains("no GPU"))
        #expect(probe.sample() == nil)
    }

    /// A CPU stand-in for the NVIDIA driver: a small shared library exporting the NVML calls
    /// the probe uses, compiled here with the system C compiler.
    @Test("NVML is read through dlopen: name, memory, driver, CUDA version and telemetry")
    func nvmlStandIn() throws {
        let dir = tempDir()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let source = dir + "/fake_nvml.c"
        try """
        #include <string.h>
        #include <stdint.h>
        typedef struct { unsigned long long total, free, used; } mem_t;
        typedef struct { unsigned int gpu, memory; } util_t;
        static int dev[2];
        int nvmlInit_v2(void) { return 0; }
        int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { if (i > 1) return 2; *h = &dev[i]; return 0; }
        int nvmlDeviceGetName(void *h, char *b, unsigned int n) { strncpy(b, h == &dev[0] ? "NVIDIA RTX A6000" : "NVIDIA GeForce RTX 4090", n); return 0; }
        int nvmlDeviceGetUUID(void *h, char *b, unsigned int n) { strncpy(b, "GPU-fake", n); return 0; }
        int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) { m->total = h == &dev[0] ? 51527024640ULL : 25757220864ULL; m->used = 1ULL << 30; m->free = m->total - m->used; return 0; }
        int nvmlSystemGetDriverVersion(char *b, unsigned int n) { strncpy(b, "550.54.15", n); return 0; }
        int nvmlSystemGetCudaDriverVersion(int *v) { *v = 12040; return 0; }
        int nvmlDeviceGetUtilizationRates(void *h, util_t *u) { u->gpu = 97; u->memory = 40; return 0; }
        int nvmlDeviceGetTemperature(void *h, int sensor, unsigned int *t) { *t = 71; return 0; }
        int nvmlDeviceGetPowerUsage(void *h, unsigned int *mw) { *mw = 251500; return 0; }
        """.write(toFile: source, atomically: true, encoding: .utf8)
        let lib = dir + "/libfake-nvml.so"
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        cc.arguments = ["-shared", "-fPIC", "-o", lib, source]
        try cc.run()
        cc.waitUntilExit()
        try #require(cc.terminationStatus == 0, "the C compiler (cc) is needed to build the NVML stand-in")

        let probe = try NVMLProbe.open(gpuIndex: 1, library: lib).get()
        let d = probe.describe()
        #expect(d.kind == .cuda)
        #expect(d.index == 1)
        #expect(d.name == "NVIDIA GeForce RTX 4090")
        #expect(d.memoryBytes == 25_757_220_864)
        #expect(d.driverVersion == "550.54.15")
        #expect(d.cudaVersion == "12.4")
        let t = try #require(probe.sample())
        #expect(t.utilization == 97)
        #expect(t.memoryUsedBytes == 1 << 30)
        #expect(t.temperatureC == 71)
        #expect(t.powerWatts == 251.5)
        // A GPU index the driver does not have falls back to the CPU with a reason.
        let (fallback, note) = DeviceProbes.make(gpuIndex: 5, nvmlLibrary: lib)
        #expect(fallback.describe().kind == .cpu)
        #expect(note.contains("no GPU with index 5"))
    }
}

@Suite("Built-in executors")
struct BuiltinExecutorTests {
    func assignment(_ payload: String, attempt: Int = 1) -> ShardAssignment {
        ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "sleep", attempt: attempt, payload: Array(payload.utf8))
    }

    @Test("sleep reports progress step by step and succeeds")
    func sleepProgress() async throws {
        let steps = StepLog()
        let a = assignment(#"{"seconds": 0.05, "steps": 5}"#)
        let r = try await SleepExecutor().run(a, context: ShardContext(assignment: a) { s, t in steps.add(s, t) })
        #expect(r.outcome == .succeeded)
        #expect(steps.all.map(\.0) == [1, 2, 3, 4, 5])
        #expect(steps.all.allSatisfy { $0.1 == 5 })
    }

    @Test("sleep fails on purpose for the first N attempts, then succeeds")
    func failAttempts() async throws {
        let first = assignment(#"{"seconds": 0, "fail_attempts": 1}"#, attempt: 1)
        #expect(try await SleepExecutor().run(first, context: ShardContext(assignment: first) { _, _ in }).outcome == .failed)
        let second = assignment(#"{"seconds": 0, "steps": 1, "fail_attempts": 1}"#, attempt: 2)
        #expect(try await SleepExecutor().run(second, context: ShardContext(assignment: second) { _, _ in }).outcome == .succeeded)
    }

    @Test("a cancelled sleep stops promptly with CancellationError")
    func cancel() async throws {
        let a = assignment(#"{"seconds": 30}"#)
        let task = Task { try await SleepExecutor().run(a, context: ShardContext(assignment: a) { _, _ in }) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}

final class StepLog: Sendable {
    private let items = Synchronization.Mutex<[(Int64, Int64)]>([])
    func add(_ s: Int64, _ t: Int64) { items.withLock { $0.append((s, t)) } }
    var all: [(Int64, Int64)] { items.withLock { $0 } }
}

import Synchronization
