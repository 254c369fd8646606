import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// GPU facts and telemetry from the NVIDIA Management Library, loaded with `dlopen` so that the
/// worker builds and runs on machines without a driver. NVML indexes GPUs physically (it ignores
/// `CUDA_VISIBLE_DEVICES`), which matches `--gpu N`.
public final class NVMLProbe: DeviceProbe, Sendable {
    private typealias InitFn = @convention(c) () -> Int32
    private typealias HandleFn = @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias StringFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>, UInt32) -> Int32
    private typealias SysStringFn = @convention(c) (UnsafeMutablePointer<CChar>, UInt32) -> Int32
    private typealias IntFn = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    private typealias MemoryFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt64>) -> Int32
    private typealias UtilFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt32>) -> Int32
    private typealias TempFn = @convention(c) (OpaquePointer?, UInt32, UnsafeMutablePointer<UInt32>) -> Int32
    private typealias PowerFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt32>) -> Int32

    // nvmlMemory_t is {total, free, used} (3 × UInt64); nvmlUtilization_t is {gpu, memory} (2 × UInt32).

    private let index: Int
    private let device: DeviceInfo
    // nvmlDevice_t handles are process-wide and valid until nvmlShutdown, which we never call;
    // NVML is thread-safe. The bit pattern is stored to keep this type Sendable.
    private let handleBits: UInt
    private let memoryFn: MemoryFn
    private let utilFn: UtilFn?
    private let tempFn: TempFn?
    private let powerFn: PowerFn?

    private init(index: Int, device: DeviceInfo, handleBits: UInt, memoryFn: MemoryFn, utilFn: UtilFn?, tempFn: TempFn?, powerFn: PowerFn?) {
        self.index = index
        self.device = device
        self.handleBits = handleBits
        self.memoryFn = memoryFn
        self.utilFn = utilFn
        self.tempFn = tempFn
        self.powerFn = powerFn
    }

    /// Loads NVML (`library`, or `TTS_NVML_LIBRARY`, or `libnvidia-ml.so.1`) and opens GPU `gpuIndex`.
    public static func open(gpuIndex: Int, library: String? = nil) -> Result<NVMLProbe, ConfigurationError> {
        let path = library ?? ProcessInfo.processInfo.environment["TTS_NVML_LIBRARY"] ?? "libnvidia-ml.so.1"
        guard let lib = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            return .failure(ConfigurationError("NVML (\(path)) not loadable"))
        }
        func sym<T>(_ name: String, _: T.Type) -> T? {
            guard let p = dlsym(lib, name) else { return nil }
            return unsafeBitCast(p, to: T.self)
        }
        guard let initFn = sym("nvmlInit_v2", InitFn.self), let handleFn = sym("nvmlDeviceGetHandleByIndex_v2", HandleFn.self),
              let nameFn = sym("nvmlDeviceGetName", StringFn.self), let memoryFn = sym("nvmlDeviceGetMemoryInfo", MemoryFn.self) else {
            return .failure(ConfigurationError("NVML (\(path)) lacks nvmlInit_v2/nvmlDeviceGetHandleByIndex_v2/nvmlDeviceGetName/nvmlDeviceGetMemoryInfo"))
        }
        guard initFn() == 0 else { return .failure(ConfigurationError("nvmlInit failed (no driver loaded?)")) }
        var handle: OpaquePointer?
        guard handleFn(UInt32(gpuIndex), &handle) == 0, let handle else {
            return .failure(ConfigurationError("NVML has no GPU with index \(gpuIndex)"))
        }
        func string(_ fn: StringFn?) -> String {
            guard let fn else { return "" }
            var buf = [CChar](repeating: 0, count: 128)
            return fn(handle, &buf, 128) == 0 ? String(cString: buf) : ""
        }
        var sysBuf = [CChar](repeating: 0, count: 96)
        let driver = sym("nvmlSystemGetDriverVersion", SysStringFn.self).map { $0(&sysBuf, 96) == 0 ? String(cString: sysBuf) : "" } ?? ""
        var cuda: Int32 = 0
        let cudaText = (sym("nvmlSystemGetCudaDriverVersion", IntFn.self).map { $0(&cuda) == 0 } ?? false) ? "\(cuda / 1000).\((cuda % 1000) / 10)" : ""
        var mem = [UInt64](repeating: 0, count: 3)
        _ = memoryFn(handle, &mem)
        let info = DeviceInfo(kind: .cuda, index: gpuIndex, name: string(nameFn), memoryBytes: mem[0],
                              driverVersion: driver, cudaVersion: cudaText, uuid: string(sym("nvmlDeviceGetUUID", StringFn.self)))
        return .success(NVMLProbe(
            index: gpuIndex, device: info, handleBits: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle))), memoryFn: memoryFn,
            utilFn: sym("nvmlDeviceGetUtilizationRates", UtilFn.self), tempFn: sym("nvmlDeviceGetTemperature", TempFn.self),
            powerFn: sym("nvmlDeviceGetPowerUsage", PowerFn.self)))
    }

    public func describe() -> DeviceInfo { device }

    public func sample() -> DeviceTelemetry? {
        let handle = OpaquePointer(bitPattern: handleBits)
        var mem = [UInt64](repeating: 0, count: 3)
        guard memoryFn(handle, &mem) == 0 else { return nil }
        var util = [UInt32](repeating: 0, count: 2)
        let utilization = utilFn.map { $0(handle, &util) == 0 ? Double(util[0]) : .nan } ?? .nan
        var temp: UInt32 = 0
        let temperature = tempFn.map { $0(handle, 0, &temp) == 0 ? Double(temp) : .nan } ?? .nan
        var mw: UInt32 = 0
        let power = powerFn.map { $0(handle, &mw) == 0 ? Double(mw) / 1000 : .nan } ?? .nan
        return DeviceTelemetry(utilization: utilization, memoryUsedBytes: mem[2], memoryTotalBytes: mem[0], temperatureC: temperature, powerWatts: power)
    }
}
