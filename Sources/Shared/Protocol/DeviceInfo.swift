/// What a worker reports about the device it drives: a CUDA GPU found through NVML, or the CPU
/// on a machine without one.
public struct DeviceInfo: Sendable, Equatable, Codable, WireCodable {
    public enum Kind: UInt8, Sendable, Codable { case cpu = 0, cuda = 1 }

    public var kind: Kind
    /// The `--gpu` index the worker was started with (also exported as `CUDA_VISIBLE_DEVICES`).
    public var index: Int
    /// e.g. `NVIDIA RTX A6000`, `NVIDIA GeForce RTX 4090`, or the CPU model name.
    public var name: String
    /// Total device memory (host memory for a CPU device).
    public var memoryBytes: UInt64
    public var driverVersion: String
    public var cudaVersion: String
    public var uuid: String

    public init(
        kind: Kind, index: Int, name: String, memoryBytes: UInt64, driverVersion: String = "",
        cudaVersion: String = "", uuid: String = ""
    ) {
        self.kind = kind
        self.index = index
        self.name = name
        self.memoryBytes = memoryBytes
        self.driverVersion = driverVersion
        self.cudaVersion = cudaVersion
        self.uuid = uuid
    }

    public init(from r: inout WireReader) throws(WireError) {
        guard let k = Kind(rawValue: try r.readByte("device.kind")) else {
            throw WireError(field: "device.kind", reason: .invalid("unknown device kind"))
        }
        kind = k
        index = try r.readInt("device.index")
        name = try r.readString("device.name")
        memoryBytes = try r.readVarint("device.memoryBytes")
        driverVersion = try r.readString("device.driverVersion")
        cudaVersion = try r.readString("device.cudaVersion")
        uuid = try r.readString("device.uuid")
    }

    public func encode(to w: inout WireWriter) {
        w.write(kind.rawValue)
        w.writeVarint(index)
        w.write(name)
        w.writeVarint(memoryBytes)
        w.write(driverVersion)
        w.write(cudaVersion)
        w.write(uuid)
    }
}

/// A sample of device telemetry carried by heartbeats (NVML on a GPU box).
public struct DeviceTelemetry: Sendable, Equatable, Codable, WireCodable {
    /// Utilization in percent, 0–100.
    public var utilization: Double
    public var memoryUsedBytes: UInt64
    public var memoryTotalBytes: UInt64
    /// Degrees Celsius; NaN when unknown.
    public var temperatureC: Double
    /// Watts; NaN when unknown.
    public var powerWatts: Double

    public init(
        utilization: Double, memoryUsedBytes: UInt64, memoryTotalBytes: UInt64,
        temperatureC: Double = .nan, powerWatts: Double = .nan
    ) {
        self.utilization = utilization
        self.memoryUsedBytes = memoryUsedBytes
        self.memoryTotalBytes = memoryTotalBytes
        self.temperatureC = temperatureC
        self.powerWatts = powerWatts
    }

    public init(from r: inout WireReader) throws(WireError) {
        utilization = try r.readDouble("telemetry.utilization")
        memoryUsedBytes = try r.readVarint("telemetry.memoryUsed")
        memoryTotalBytes = try r.readVarint("telemetry.memoryTotal")
        temperatureC = try r.readDouble("telemetry.temperature")
        powerWatts = try r.readDouble("telemetry.power")
    }

    public func encode(to w: inout WireWriter) {
        w.write(utilization)
        w.writeVarint(memoryUsedBytes)
        w.writeVarint(memoryTotalBytes)
        w.write(temperatureC)
        w.write(powerWatts)
    }

    /// The sample as W&B system-metric keys for GPU `index` (`gpu.N.gpu`, `.memoryAllocated`,
    /// `.memoryAllocatedBytes`, `.temp`, `.powerWatts`); unknown values are left out.
    public func wandbStats(gpuIndex index: Int) -> [(key: String, value: Double)] {
        var out: [(String, Double)] = []
        if utilization.isFinite { out.append(("gpu.\(index).gpu", utilization)) }
        if memoryTotalBytes > 0 {
            out.append(("gpu.\(index).memoryAllocated", Double(memoryUsedBytes) / Double(memoryTotalBytes) * 100))
        }
        out.append(("gpu.\(index).memoryAllocatedBytes", Double(memoryUsedBytes)))
        if temperatureC.isFinite { out.append(("gpu.\(index).temp", temperatureC)) }
        if powerWatts.isFinite { out.append(("gpu.\(index).powerWatts", powerWatts)) }
        return out
    }

    enum CodingKeys: String, CodingKey { case utilization, memoryUsedBytes, memoryTotalBytes, temperatureC, powerWatts }

    // JSON has no NaN: unknown values are encoded as null.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        utilization = try c.decodeIfPresent(Double.self, forKey: .utilization) ?? .nan
        memoryUsedBytes = try c.decode(UInt64.self, forKey: .memoryUsedBytes)
        memoryTotalBytes = try c.decode(UInt64.self, forKey: .memoryTotalBytes)
        temperatureC = try c.decodeIfPresent(Double.self, forKey: .temperatureC) ?? .nan
        powerWatts = try c.decodeIfPresent(Double.self, forKey: .powerWatts) ?? .nan
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if utilization.isFinite { try c.encode(utilization, forKey: .utilization) }
        try c.encode(memoryUsedBytes, forKey: .memoryUsedBytes)
        try c.encode(memoryTotalBytes, forKey: .memoryTotalBytes)
        if temperatureC.isFinite { try c.encode(temperatureC, forKey: .temperatureC) }
        if powerWatts.isFinite { try c.encode(powerWatts, forKey: .powerWatts) }
    }
}
