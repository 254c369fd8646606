import Foundation
import Shared

/// Finds out what device a worker drives and samples its telemetry.
public protocol DeviceProbe: Sendable {
    /// The device, as reported at `register`.
    func describe() -> DeviceInfo
    /// A telemetry sample for heartbeats; nil when the device has none (CPU).
    func sample() -> DeviceTelemetry?
}

/// Picks the probe for `--gpu N`: NVML when the NVIDIA management library loads and has that
/// GPU, else the CPU. `override` (tests, or a box whose NVML is broken) wins over both.
public enum DeviceProbes {
    public static func make(gpuIndex: Int, override: DeviceInfo? = nil, nvmlLibrary: String? = nil) -> (probe: any DeviceProbe, note: String) {
        if let override { return (FixedDeviceProbe(device: override), "device given on the command line") }
        switch NVMLProbe.open(gpuIndex: gpuIndex, library: nvmlLibrary) {
        case .success(let probe): return (probe, "NVML")
        case .failure(let why): return (CPUDeviceProbe(index: gpuIndex), "no GPU: \(why); reporting the CPU")
        }
    }
}

/// A device stated up front (`--device-name`, `--device-memory-gb`): used by tests to stand in
/// for an A6000 or a 4090 on a machine without one.
public struct FixedDeviceProbe: DeviceProbe {
    public let device: DeviceInfo
    public init(device: DeviceInfo) { self.device = device }
    public func describe() -> DeviceInfo { device }
    public func sample() -> DeviceTelemetry? { nil }
}

/// The CPU of a machine without a GPU: model name and host memory from /proc.
public struct CPUDeviceProbe: DeviceProbe {
    let index: Int
    public init(index: Int) { self.index = index }

    public func describe() -> DeviceInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "CPU"
        return DeviceInfo(kind: .cpu, index: index, name: "CPU (\(model), \(ProcessInfo.processInfo.activeProcessorCount) cores)",
                          memoryBytes: ProcessInfo.processInfo.physicalMemory)
    }

    public func sample() -> DeviceTelemetry? { nil }
}
