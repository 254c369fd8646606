import CTorchShim
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The libtorch training shim (`libtts_torch_shim.so`, built from Sources/TorchShim with CMake
/// against whichever libtorch the box has), loaded at run time with `dlopen` so that the worker
/// builds, starts and runs every other runner without libtorch. Its C ABI is
/// `Sources/TorchShim/include/tts_torch_shim.h`; no C type leaves this module.
public final class TorchShim: Sendable {
    /// Where the library was loaded from.
    public let path: String
    private let fns: Functions

    /// The places looked at, in order, when no path is given: `TTS_TORCH_SHIM`, next to the
    /// worker's executable, `lib/` beside it, and `.build-torchshim/` in the working directory
    /// (where `scripts/torch/build-shim.sh` builds it).
    public static func candidatePaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var out: [String] = []
        if let p = environment["TTS_TORCH_SHIM"], !p.isEmpty { out.append(p) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exe.appendingPathComponent("libtts_torch_shim.so").path)
        out.append(exe.appendingPathComponent("../lib/libtts_torch_shim.so").standardizedFileURL.path)
        out.append(FileManager.default.currentDirectoryPath + "/.build-torchshim/libtts_torch_shim.so")
        return out
    }

    /// Loads the shim from `path`, or from the first of ``candidatePaths(environment:)`` that exists.
    /// - Throws: ``TorchShimError`` `.unavailable` saying what was tried and why it failed.
    public static func load(path: String? = nil) throws(TorchShimError) -> TorchShim {
        let paths = path.map { [$0] } ?? candidatePaths()
        guard let found = paths.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw TorchShimError(.unavailable, "libtts_torch_shim.so not found (looked at \(paths.joined(separator: ", "))); build it with scripts/torch/build-shim.sh and pass --torch-shim PATH or set TTS_TORCH_SHIM")
        }
        guard let handle = dlopen(found, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw TorchShimError(.unavailable, "cannot load \(found): \(why) (is libtorch installed where the shim was built against it?)")
        }
        let fns: Functions
        do { fns = try Functions(handle: handle, path: found) } catch {
            dlclose(handle)
            throw error
        }
        let version = fns.abiVersion()
        guard version == TTS_SHIM_ABI_VERSION else {
            dlclose(handle)
            throw TorchShimError(.unavailable, "\(found) has ABI version \(version), this worker needs \(TTS_SHIM_ABI_VERSION); rebuild the shim from this release's Sources/TorchShim")
        }
        return TorchShim(path: found, fns: fns)
    }

    private init(path: String, fns: Functions) {
        self.path = path
        self.fns = fns
    }

    /// The shim's message for the last failure on this thread.
    func lastError() -> String { fns.lastError().map { String(cString: $0) } ?? "" }

    func check(_ status: Int32) throws(TorchShimError) {
        guard status != TTS_OK else { return }
        throw TorchShimError(TorchShimError.Code(rawValue: status) ?? .internal, lastError())
    }

    // MARK: devices

    /// A device as the shim sees it.
    public struct Device: Sendable, Equatable {
        public var name: String
        public var totalBytes: Int64
        public var freeBytes: Int64
        /// Bytes held by torch's allocator (CUDA), for heartbeats and W&B system metrics.
        public var allocatedBytes: Int64
        public var isCUDA: Bool
    }

    /// CUDA devices libtorch sees (0 with a CPU libtorch).
    public var cudaDeviceCount: Int { Int(fns.cudaDeviceCount()) }
    /// True when the shim was built against a CUDA libtorch.
    public var builtWithCUDA: Bool { fns.builtWithCUDA() != 0 }

    /// Device `index` (-1: the CPU).
    public func device(_ index: Int) throws(TorchShimError) -> Device {
        var info = tts_device_info()
        try check(fns.deviceInfo(Int32(index), &info))
        let name = withUnsafeBytes(of: info.name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return Device(name: name, totalBytes: info.total_bytes, freeBytes: info.free_bytes, allocatedBytes: info.allocated_bytes, isCUDA: info.is_cuda != 0)
    }

    /// The LR the shim uses at optimizer step `step` for `config` (a pure function).
    public func learningRate(_ config: TorchTrainConfig, step: Int64) -> Double {
        var c = config.cValue(defaults: defaultConfig())
        return fns.lrAt(&c, step)
    }

    func defaultConfig() -> tts_train_config {
        var c = tts_train_config()
        fns.defaultConfig(&c)
        return c
    }

    // MARK: models

    /// Loads a TorchScript module that keeps the training contract, with its AdamW optimizer.
    public func loadModel(_ path: String, config: TorchTrainConfig) throws(TorchShimError) -> TorchModel {
        var c = config.cValue(defaults: defaultConfig())
        var handle: OpaquePointer?
        try check(fns.modelLoad(path, &c, &handle))
        guard let handle else { throw TorchShimError(.internal, "model_load returned no handle") }
        return TorchModel(shim: self, handle: handle, fns: fns)
    }

    /// Loads an inference-only module that exports `embed_waveform` and `embedding_sample_rate`
    /// (CONTRACT.md, "Embeddings"), e.g. the speaker encoder of the SIM metric
    /// (`scripts/torch/export_speaker_encoder.py`). `device` -1 is the CPU, N is cuda:N; `threads`
    /// > 0 sets torch's intra-op threads (process-wide), 0 leaves them.
    public func loadSpeakerEncoder(_ path: String, device: Int = -1, threads: Int = 0) throws(TorchShimError) -> SpeakerEncoder {
        var handle: OpaquePointer?
        try check(fns.encoderLoad(path, Int32(device), Int32(threads), &handle))
        guard let handle else { throw TorchShimError(.internal, "encoder_load returned no handle") }
        return SpeakerEncoder(shim: self, handle: handle, fns: fns)
    }

    /// Joins a data-parallel process group of `worldSize` ranks (c10d, gloo): rank 0 serves the
    /// rendezvous on `masterPort`; every rank connects to `masterAddress:masterPort`, then to the
    /// others over the interface holding `localAddress` (nil: the host's default; rank 0 uses
    /// `masterAddress`). Blocks until all ranks joined or `timeout` passed; `timeout` also bounds
    /// every later collective. - Throws: `.peer` when the rendezvous or the connections fail.
    public func joinGroup(masterAddress: String, masterPort: Int, localAddress: String?, rank: Int, worldSize: Int,
                          timeout: Duration) throws(TorchShimError) -> TorchProcessGroup {
        var handle: OpaquePointer?
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        try check(fns.groupJoin(masterAddress, Int32(clamping: masterPort), localAddress, Int32(clamping: rank), Int32(clamping: worldSize), seconds, &handle))
        guard let handle else { throw TorchShimError(.internal, "group_join returned no handle") }
        return TorchProcessGroup(handle: handle, rank: rank, worldSize: worldSize, fns: fns)
    }

    /// The step and the caller's JSON stored in a checkpoint, without loading a model.
    public func checkpointInfo(_ path: String) throws(TorchShimError) -> (step: Int64, extra: String) {
        var length: Int64 = 0
        var step: Int64 = 0
        try check(fns.readCheckpointExtra(path, nil, 0, &length, &step))
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        try check(fns.readCheckpointExtra(path, &buffer, Int64(buffer.count), &length, &step))
        return (step, cText(buffer))
    }

    /// The C functions, looked up once.
    struct Functions: @unchecked Sendable { // plain C function pointers into a library that is never unloaded
        let abiVersion: @convention(c) () -> Int32
        let lastError: @convention(c) () -> UnsafePointer<CChar>?
        let cudaDeviceCount: @convention(c) () -> Int32
        let builtWithCUDA: @convention(c) () -> Int32
        let deviceInfo: @convention(c) (Int32, UnsafeMutablePointer<tts_device_info>?) -> Int32
        let defaultConfig: @convention(c) (UnsafeMutablePointer<tts_train_config>?) -> Void
        let lrAt: @convention(c) (UnsafePointer<tts_train_config>?, Int64) -> Double
        let modelLoad: @convention(c) (UnsafePointer<CChar>?, UnsafePointer<tts_train_config>?, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
        let modelFree: @convention(c) (OpaquePointer?) -> Void
        let step: @convention(c) (OpaquePointer?) -> Int64
        let parameterCount: @convention(c) (OpaquePointer?) -> Int64
        let forwardArity: @convention(c) (OpaquePointer?) -> Int32
        let trainStep: @convention(c) (OpaquePointer?, UnsafePointer<tts_batch>?, Int32, UnsafeMutablePointer<tts_step_result>?) -> Int32
        let evalStep: @convention(c) (OpaquePointer?, UnsafePointer<tts_batch>?, UnsafeMutablePointer<tts_step_result>?) -> Int32
        let saveCheckpoint: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32
        let loadCheckpoint: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int64, UnsafeMutablePointer<Int64>?) -> Int32
        let readCheckpointExtra: @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int64, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?) -> Int32
        let hasSynthesize: @convention(c) (OpaquePointer?) -> Int32
        let synthesize: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int64, UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int32>?) -> Int32
        let synthesizeAcceptsPrompt: @convention(c) (OpaquePointer?) -> Int32
        let synthesisSampleRate: @convention(c) (OpaquePointer?) -> Int32
        let synthesizeWithPrompt: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int64, UnsafePointer<Float>?, Int64, UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int32>?) -> Int32
        let freeSamples: @convention(c) (UnsafeMutablePointer<Float>?) -> Void
        let encoderLoad: @convention(c) (UnsafePointer<CChar>?, Int32, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
        let encoderFree: @convention(c) (OpaquePointer?) -> Void
        let encoderSampleRate: @convention(c) (OpaquePointer?) -> Int32
        let embedWaveform: @convention(c) (OpaquePointer?, UnsafePointer<Float>?, Int64, UnsafeMutablePointer<Float>?, Int64, UnsafeMutablePointer<Int64>?) -> Int32
        let groupJoin: @convention(c) (UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32, Int32, Double, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
        let groupFree: @convention(c) (OpaquePointer?) -> Void
        let modelJoinGroup: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32

        init(handle: UnsafeMutableRawPointer, path: String) throws(TorchShimError) {
            func sym<T>(_ name: String, _: T.Type) throws(TorchShimError) -> T {
                guard let p = dlsym(handle, name) else {
                    throw TorchShimError(.unavailable, "\(path) has no symbol \(name): not a tts torch shim, or one of another version")
                }
                return unsafeBitCast(p, to: T.self)
            }
            abiVersion = try sym("tts_shim_abi_version", (@convention(c) () -> Int32).self)
            lastError = try sym("tts_shim_last_error", (@convention(c) () -> UnsafePointer<CChar>?).self)
            cudaDeviceCount = try sym("tts_shim_cuda_device_count", (@convention(c) () -> Int32).self)
            builtWithCUDA = try sym("tts_shim_built_with_cuda", (@convention(c) () -> Int32).self)
            deviceInfo = try sym("tts_shim_device_info", (@convention(c) (Int32, UnsafeMutablePointer<tts_device_info>?) -> Int32).self)
            defaultConfig = try sym("tts_shim_default_config", (@convention(c) (UnsafeMutablePointer<tts_train_config>?) -> Void).self)
            lrAt = try sym("tts_shim_lr_at", (@convention(c) (UnsafePointer<tts_train_config>?, Int64) -> Double).self)
            modelLoad = try sym("tts_shim_model_load", (@convention(c) (UnsafePointer<CChar>?, UnsafePointer<tts_train_config>?, UnsafeMutablePointer<OpaquePointer?>?) -> Int32).self)
            modelFree = try sym("tts_shim_model_free", (@convention(c) (OpaquePointer?) -> Void).self)
            step = try sym("tts_shim_step", (@convention(c) (OpaquePointer?) -> Int64).self)
            parameterCount = try sym("tts_shim_parameter_count", (@convention(c) (OpaquePointer?) -> Int64).self)
            forwardArity = try sym("tts_shim_forward_arity", (@convention(c) (OpaquePointer?) -> Int32).self)
            trainStep = try sym("tts_shim_train_step", (@convention(c) (OpaquePointer?, UnsafePointer<tts_batch>?, Int32, UnsafeMutablePointer<tts_step_result>?) -> Int32).self)
            evalStep = try sym("tts_shim_eval_step", (@convention(c) (OpaquePointer?, UnsafePointer<tts_batch>?, UnsafeMutablePointer<tts_step_result>?) -> Int32).self)
            saveCheckpoint = try sym("tts_shim_save_checkpoint", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32).self)
            loadCheckpoint = try sym("tts_shim_load_checkpoint", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int64, UnsafeMutablePointer<Int64>?) -> Int32).self)
            readCheckpointExtra = try sym("tts_shim_read_checkpoint_extra", (@convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int64, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?) -> Int32).self)
            hasSynthesize = try sym("tts_shim_has_synthesize", (@convention(c) (OpaquePointer?) -> Int32).self)
            synthesize = try sym("tts_shim_synthesize", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int64, UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int32>?) -> Int32).self)
            synthesizeAcceptsPrompt = try sym("tts_shim_synthesize_accepts_prompt", (@convention(c) (OpaquePointer?) -> Int32).self)
            synthesisSampleRate = try sym("tts_shim_synthesis_sample_rate", (@convention(c) (OpaquePointer?) -> Int32).self)
            synthesizeWithPrompt = try sym("tts_shim_synthesize_with_prompt", (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int64, UnsafePointer<Float>?, Int64, UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int32>?) -> Int32).self)
            freeSamples = try sym("tts_shim_free_samples", (@convention(c) (UnsafeMutablePointer<Float>?) -> Void).self)
            encoderLoad = try sym("tts_shim_encoder_load", (@convention(c) (UnsafePointer<CChar>?, Int32, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32).self)
            encoderFree = try sym("tts_shim_encoder_free", (@convention(c) (OpaquePointer?) -> Void).self)
            encoderSampleRate = try sym("tts_shim_encoder_sample_rate", (@convention(c) (OpaquePointer?) -> Int32).self)
            embedWaveform = try sym("tts_shim_embed_waveform", (@convention(c) (OpaquePointer?, UnsafePointer<Float>?, Int64, UnsafeMutablePointer<Float>?, Int64, UnsafeMutablePointer<Int64>?) -> Int32).self)
            groupJoin = try sym("tts_shim_group_join", (@convention(c) (UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, Int32, Int32, Double, UnsafeMutablePointer<OpaquePointer?>?) -> Int32).self)
            groupFree = try sym("tts_shim_group_free", (@convention(c) (OpaquePointer?) -> Void).self)
            modelJoinGroup = try sym("tts_shim_model_join_group", (@convention(c) (OpaquePointer?, OpaquePointer?) -> Int32).self)
        }
    }
}

/// The LR schedule of a ``TorchTrainConfig`` (the shim's `TTS_SCHEDULE_*`).
public enum TorchSchedule: String, Sendable, Equatable, CaseIterable {
    case constant, linear, cosine
    /// Warmup, stable, then a linear decay over the last `decayFraction` of the steps.
    case warmupStableDecay = "wsd"

    var code: Int32 {
        switch self {
        case .constant: return Int32(TTS_SCHEDULE_CONSTANT)
        case .linear: return Int32(TTS_SCHEDULE_LINEAR)
        case .cosine: return Int32(TTS_SCHEDULE_COSINE)
        case .warmupStableDecay: return Int32(TTS_SCHEDULE_WSD)
        }
    }
}

/// How the shim trains: AdamW, clipping, the LR schedule, the device and precision.
public struct TorchTrainConfig: Sendable, Equatable {
    public var learningRate = 1e-4
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var epsilon = 1e-8
    public var weightDecay = 0.01
    /// Max total gradient norm; 0 or less: no clipping.
    public var gradClip = 1.0
    public var schedule = TorchSchedule.cosine
    public var warmupSteps: Int64 = 0
    public var totalSteps: Int64 = 1_000
    public var minLearningRateRatio = 0.0
    public var decayFraction = 0.1
    /// -1: the CPU; N: `cuda:N` (with `CUDA_VISIBLE_DEVICES` set by `--gpu`, usually 0).
    public var device: Int = -1
    /// bf16 autocast on CUDA (a no-op on the CPU).
    public var mixedPrecision = false
    public var seed: Int64 = 0
    /// Torch intra-op threads; 0 leaves torch's default.
    public var threads = 0
    /// Test stand-in: a micro-batch of at least this many rows fails as CUDA OOM would (0: off).
    public var outOfMemoryAtBatch = 0

    public init() {}

    func cValue(defaults: tts_train_config) -> tts_train_config {
        var c = defaults
        c.lr = learningRate
        c.beta1 = beta1
        c.beta2 = beta2
        c.eps = epsilon
        c.weight_decay = weightDecay
        c.grad_clip = gradClip
        c.schedule = schedule.code
        c.warmup_steps = warmupSteps
        c.total_steps = totalSteps
        c.min_lr_ratio = minLearningRateRatio
        c.decay_fraction = decayFraction
        c.device = Int32(device)
        c.amp = mixedPrecision ? 1 : 0
        c.seed = seed
        c.threads = Int32(threads)
        c.oom_at_batch = Int32(outOfMemoryAtBatch)
        return c
    }
}

/// One input tensor of a batch (host memory, row-major).
public struct TorchTensor: Sendable, Equatable {
    public enum Storage: Sendable, Equatable {
        case int64([Int64])
        case int32([Int32])
        case float32([Float])
    }
    public var name: String
    public var shape: [Int64]
    public var storage: Storage

    public init(_ name: String, shape: [Int64], _ storage: Storage) {
        self.name = name
        self.shape = shape
        self.storage = storage
    }

    /// The contract's batch from a loader batch: `text_ids, text_lengths, code_ids, code_lengths`,
    /// then `condition [B, R, D]` (float32) when the batch carries the prompts' conditions.
    public static func tensors(_ b: PaddedBatch) -> [TorchTensor] {
        var t = [TorchTensor("text_ids", shape: [Int64(b.size), Int64(b.maxTextLength)], .int64(b.textIds)),
                 TorchTensor("text_lengths", shape: [Int64(b.size)], .int64(b.textLengths)),
                 TorchTensor("code_ids", shape: [Int64(b.size), Int64(b.maxCodeLength)], .int64(b.codeIds)),
                 TorchTensor("code_lengths", shape: [Int64(b.size)], .int64(b.codeLengths))]
        if let condition = b.condition {
            t.append(TorchTensor("condition", shape: [Int64(b.size)] + b.conditionShape.map { Int64($0) }, .float32(condition)))
        }
        return t
    }
}

/// What one step returned.
public struct TorchStepResult: Sendable, Equatable {
    /// Optimizer steps done after this call.
    public var step: Int64
    public var learningRate: Double
    /// Total gradient norm before clipping, and after.
    public var gradNorm: Double
    public var gradNormClipped: Double
    /// The gradient norm was not finite: the update was skipped (the step still counts).
    public var skipped: Bool
    /// `loss` first, then the module's other entries in its order (means over micro-batches).
    public var metrics: [(name: String, value: Double)]

    public subscript(_ name: String) -> Double? { metrics.first { $0.name == name }?.value }

    public static func == (a: TorchStepResult, b: TorchStepResult) -> Bool {
        a.step == b.step && a.learningRate == b.learningRate && a.gradNorm == b.gradNorm && a.skipped == b.skipped
            && a.metrics.map(\.name) == b.metrics.map(\.name) && a.metrics.map(\.value) == b.metrics.map(\.value)
    }
}

/// A loaded model with its optimizer. Calls are serialized (one at a time).
public final class TorchModel: @unchecked Sendable { // the handle is only touched under `lock`; the shim requires one call at a time per model
    public let shim: TorchShim
    private let handle: OpaquePointer
    private let fns: TorchShim.Functions
    private let lock = Mutex(())

    init(shim: TorchShim, handle: OpaquePointer, fns: TorchShim.Functions) {
        self.shim = shim
        self.handle = handle
        self.fns = fns
    }

    deinit { fns.modelFree(handle) }

    /// Optimizer steps done (restored by ``loadCheckpoint(_:)``).
    public var step: Int64 { lock.withLock { _ in fns.step(handle) } }
    public var parameterCount: Int64 { lock.withLock { _ in fns.parameterCount(handle) } }
    /// How many tensors `forward` takes.
    public var forwardArity: Int { lock.withLock { _ in Int(fns.forwardArity(handle)) } }

    /// One optimizer step over `microBatches` (gradient accumulation).
    public func trainStep(_ microBatches: [[TorchTensor]]) throws(TorchShimError) -> TorchStepResult {
        try call(microBatches) { (batches, count, out) in self.fns.trainStep(self.handle, batches, count, out) }
    }

    /// Forward only (no gradients, eval mode).
    public func evalStep(_ batch: [TorchTensor]) throws(TorchShimError) -> TorchStepResult {
        try call([batch]) { (batches, _, out) in self.fns.evalStep(self.handle, batches, out) }
    }

    /// Trains data-parallel in `group` from now on: rank 0's parameters are broadcast, and every
    /// ``trainStep(_:)`` averages gradients and metrics over the ranks (each rank calls its steps
    /// in the same order). - Throws: `.peer` when the broadcast fails.
    public func join(_ group: TorchProcessGroup) throws(TorchShimError) {
        let status = lock.withLock { _ in group.withHandle { fns.modelJoinGroup(handle, $0) } }
        try shim.check(status)
    }

    /// Writes a checkpoint (temp file + rename) with the caller's JSON (the data position).
    public func saveCheckpoint(_ path: String, extra: String) throws(TorchShimError) {
        let status = lock.withLock { _ in fns.saveCheckpoint(handle, path, extra) }
        try shim.check(status)
    }

    /// True when the module exports `synthesize(text, max_codes)` and `synthesis_sample_rate()`
    /// (CONTRACT.md, "Synthesis").
    public var canSynthesize: Bool { lock.withLock { _ in fns.hasSynthesize(handle) == 1 } }

    /// True when the module's `synthesize` takes a voice prompt as its third argument
    /// (`synthesize(text, max_codes, prompt: Optional[Tensor] = None)`, CONTRACT.md "Synthesis", ABI 4).
    public var synthesizeAcceptsPrompt: Bool { lock.withLock { _ in fns.synthesizeAcceptsPrompt(handle) == 1 } }

    /// The module's `synthesis_sample_rate()` (its output's rate, and a prompt's), nil without one.
    public var synthesisSampleRate: Int? { lock.withLock { _ in let r = fns.synthesisSampleRate(handle); return r > 0 ? Int(r) : nil } }

    /// Speech for `text` (NFC-normalised here) from the module's `synthesize`, with the current
    /// parameters (eval mode, no gradients): mono samples in [-1, 1] and their rate. `prompt`:
    /// the voice prompt's samples at the module's synthesis rate, for a module whose `synthesize`
    /// takes one (``synthesizeAcceptsPrompt``; otherwise a contract error); nil or empty: none.
    public func synthesize(_ text: String, maxCodes: Int, prompt: [Float]? = nil) throws(TorchShimError) -> (samples: [Float], sampleRate: Int) {
        let nfc = text.precomposedStringWithCanonicalMapping
        let voice = prompt ?? []
        let (status, samples, rate): (Int32, [Float], Int32) = lock.withLock { _ in
            var pointer: UnsafeMutablePointer<Float>?
            var count: Int64 = 0
            var rate: Int32 = 0
            let status = voice.withUnsafeBufferPointer { p in
                fns.synthesizeWithPrompt(handle, nfc, Int64(maxCodes), p.baseAddress, Int64(p.count), &pointer, &count, &rate)
            }
            defer { fns.freeSamples(pointer) }
            guard status == TTS_OK, let pointer else { return (status, [], 0) }
            return (status, Array(UnsafeBufferPointer(start: pointer, count: Int(count))), rate)
        }
        try shim.check(status)
        return (samples, Int(rate))
    }

    /// Restores a checkpoint; returns the caller's JSON stored with it.
    public func loadCheckpoint(_ path: String) throws(TorchShimError) -> String {
        let (status, text): (Int32, String) = lock.withLock { _ in
            var length: Int64 = 0
            let probe = fns.loadCheckpoint(handle, path, nil, 0, &length)
            guard probe == TTS_OK else { return (probe, "") }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            let s = fns.loadCheckpoint(handle, path, &buffer, Int64(buffer.count), &length)
            return (s, cText(buffer))
        }
        try shim.check(status)
        return text
    }

    /// Lays out the tensors as C structs for the duration of `body`.
    private func call(_ microBatches: [[TorchTensor]],
                      _ body: (UnsafePointer<tts_batch>, Int32, UnsafeMutablePointer<tts_step_result>) -> Int32) throws(TorchShimError) -> TorchStepResult {
        var result = tts_step_result()
        let status: Int32 = lock.withLock { _ in
            // Keep every name, shape and data buffer alive and pinned while the shim reads them.
            var names: [UnsafeMutablePointer<CChar>?] = []
            var shapes: [UnsafeMutablePointer<Int64>] = []
            var datas: [UnsafeMutableRawPointer] = []
            defer {
                names.forEach { free($0) }
                shapes.forEach { $0.deallocate() }
                datas.forEach { $0.deallocate() }
            }
            var cBatches: [[tts_tensor]] = []
            for batch in microBatches {
                var row: [tts_tensor] = []
                for t in batch {
                    let name = strdup(t.name)
                    names.append(name)
                    let shape = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, t.shape.count))
                    shape.initialize(from: t.shape, count: t.shape.count)
                    shapes.append(shape)
                    let (dtype, bytes): (Int32, Int) = {
                        switch t.storage {
                        case .int64(let a): return (Int32(TTS_DTYPE_INT64), a.count * 8)
                        case .int32(let a): return (Int32(TTS_DTYPE_INT32), a.count * 4)
                        case .float32(let a): return (Int32(TTS_DTYPE_FLOAT32), a.count * 4)
                        }
                    }()
                    let data = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes), alignment: 8)
                    switch t.storage {
                    case .int64(let a): a.withUnsafeBytes { if let src = $0.baseAddress { data.copyMemory(from: src, byteCount: bytes) } }
                    case .int32(let a): a.withUnsafeBytes { if let src = $0.baseAddress { data.copyMemory(from: src, byteCount: bytes) } }
                    case .float32(let a): a.withUnsafeBytes { if let src = $0.baseAddress { data.copyMemory(from: src, byteCount: bytes) } }
                    }
                    datas.append(data)
                    row.append(tts_tensor(name: UnsafePointer(name), dtype: dtype, ndim: Int32(t.shape.count),
                                          shape: UnsafePointer(shape), data: UnsafeRawPointer(data)))
                }
                cBatches.append(row)
            }
            return withTensorRows(cBatches) { batches in
                body(batches, Int32(microBatches.count), &result)
            }
        }
        try shim.check(status)
        var metrics: [(name: String, value: Double)] = []
        withUnsafeBytes(of: result.metrics) { raw in
            let all = raw.bindMemory(to: tts_metric.self)
            for m in all.prefix(Int(result.metric_count)) {
                let name = withUnsafeBytes(of: m.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                metrics.append((name, m.value))
            }
        }
        return TorchStepResult(step: result.step, learningRate: result.lr, gradNorm: result.grad_norm,
                               gradNormClipped: result.grad_norm_clipped, skipped: result.skipped != 0, metrics: metrics)
    }
}

/// A NUL-terminated C buffer as a String.
private func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Builds the `tts_batch` array over rows of tensors whose storage stays alive for `body`.
private func withTensorRows<R>(_ rows: [[tts_tensor]], _ body: (UnsafePointer<tts_batch>) -> R) -> R {
    let tensors = rows.map { row -> UnsafeMutablePointer<tts_tensor> in
        let p = UnsafeMutablePointer<tts_tensor>.allocate(capacity: max(1, row.count))
        p.initialize(from: row, count: row.count)
        return p
    }
    defer { tensors.forEach { $0.deallocate() } }
    let batches = zip(rows, tensors).map { tts_batch(tensors: UnsafePointer($1), count: Int32($0.count)) }
    return batches.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// A data-parallel process group of the shim (ABI 5): one rank of `worldSize`. A model that joined
/// it keeps the group's connections alive until the model is freed.
public final class TorchProcessGroup: @unchecked Sendable { // the handle is immutable after creation and only passed to the shim, which takes a reference of its own
    public let rank: Int
    public let worldSize: Int
    private let handle: OpaquePointer
    private let fns: TorchShim.Functions

    init(handle: OpaquePointer, rank: Int, worldSize: Int, fns: TorchShim.Functions) {
        self.handle = handle
        self.rank = rank
        self.worldSize = worldSize
        self.fns = fns
    }

    deinit { fns.groupFree(handle) }

    func withHandle<T>(_ body: (OpaquePointer) -> T) -> T { body(handle) }
}
