import Foundation
import Shared

/// Everything `tts-worker join` can be told.
public struct WorkerConfiguration: Sendable {
    /// The coordinator to dial, e.g. `tcp://10.0.0.5:5555` or `tls+tcp://coord:5555`.
    public var coordinator = "tcp://127.0.0.1:5555"
    /// `--gpu N`: the device this worker drives (also exported as `CUDA_VISIBLE_DEVICES`).
    public var gpuIndex = 0
    /// Display name; defaults to `HOST-gpuN`.
    public var name: String?
    public var token: ClusterToken?
    /// Holds the worker's durable identity (and, later, its metric spool).
    public var stateDirectory: String?
    public var tls: NNGTLSConfiguration?
    /// Stand-in device for tests and broken drivers.
    public var deviceOverride: DeviceInfo?
    public var nvmlLibrary: String?
    /// How long one poll waits for work at the coordinator.
    public var pollWaitMs = 20_000
    /// `--advertise-address`: where the other ranks of a data-parallel gang reach this worker's
    /// rendezvous when it is rank 0 (nil: the local address this host uses to reach the
    /// coordinator, ``RendezvousPort/localAddress(towards:)``).
    public var advertiseAddress: String?
    /// Request timeout for everything but polls.
    public var requestTimeoutMs = 5_000
    /// `--speaker-encoder`: the exported speaker encoder (TorchScript) for evaluation SIM; nil:
    /// the first of ``TorchSpeakerEmbedder/candidatePaths(environment:)`` that exists.
    public var speakerEncoder: String?
    /// `--speaker-command`: a program that embeds a WAV file (``CommandSpeakerEmbedder``); wins
    /// over ``speakerEncoder``.
    public var speakerCommand: [String]?
    /// Seconds one run of ``speakerCommand`` may take.
    public var speakerTimeoutSeconds = 120.0

    public init() {}

    /// `--host-name`: the host this worker reports (default the system's host name). Workers that
    /// report the same host are one node of a data-parallel gang (consecutive local ranks, their
    /// GPUs visible to each other's ranks); containers with their own host names on one box, or
    /// boxes with the same name, set it.
    public var hostNameOverride: String?

    public var hostName: String { hostNameOverride ?? ProcessInfo.processInfo.hostName }

    /// The interface of ``rendezvousAddress`` (nil for loopback): a gang rank's trainer gets it
    /// as `GLOO_SOCKET_IFNAME` and `NCCL_SOCKET_IFNAME` (unless its job sets them), so its
    /// collectives use the network the other ranks reach it on rather than whatever the host
    /// name resolves to.
    public var collectiveInterface: String? { RendezvousPort.interface(holding: rendezvousAddress) }

    /// The rendezvous address this worker offers: ``advertiseAddress``, else the local address
    /// towards the coordinator's host.
    public var rendezvousAddress: String {
        advertiseAddress ?? RendezvousPort.host(ofCoordinator: coordinator).map(RendezvousPort.localAddress(towards:)) ?? "127.0.0.1"
    }
    public var displayName: String { name ?? "\(hostName)-gpu\(gpuIndex)" }

    /// The state directory actually used: `--state-dir`, else `./tts-worker-state/NAME`.
    public var resolvedStateDirectory: String {
        stateDirectory ?? FileManager.default.currentDirectoryPath + "/tts-worker-state/\(displayName)"
    }
}
