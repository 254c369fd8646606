import FuzzSupport
import Worker

/// Fuzzes ``NpyArray/parse(_:path:)`` (the trainer's `.npy` feature files).
///
/// Beyond "does not crash": an accepted array has a shape whose element count fits in `Int`, holds
/// exactly that many elements of its dtype (and none of the other kind), its data fits in the
/// input, and writing it back as `.npy` and parsing that gives the same array bit for bit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    let array: NpyArray
    do { array = try NpyArray.parse(bytes, path: "fuzz.npy") } catch {
        FuzzCheck.require(error.path == "fuzz.npy" && !error.message.isEmpty, "an NpyError without path or message")
        return 0
    }
    var elements = 1
    for n in array.shape {
        FuzzCheck.require(n >= 0, "negative dimension in \(array.shape)")
        let (product, overflow) = elements.multipliedReportingOverflow(by: n)
        FuzzCheck.require(!overflow, "shape \(array.shape) overflows Int")
        elements = product
    }
    FuzzCheck.require(array.count == elements, "count \(array.count) for shape \(array.shape)")
    let width: Int
    let raw: [UInt64]
    switch array.dtype {
    case .int32:
        width = 4
        FuzzCheck.require(array.integers.count == elements && array.floats.isEmpty, "int32 array with wrong element counts")
        FuzzCheck.require(array.integers.allSatisfy { Int32(exactly: $0) != nil }, "int32 element out of range")
        raw = array.integers.map { UInt64(UInt32(bitPattern: Int32(truncatingIfNeeded: $0))) }
    case .int64:
        width = 8
        FuzzCheck.require(array.integers.count == elements && array.floats.isEmpty, "int64 array with wrong element counts")
        raw = array.integers.map { UInt64(bitPattern: $0) }
    case .float32:
        width = 4
        FuzzCheck.require(array.floats.count == elements && array.integers.isEmpty, "float32 array with wrong element counts")
        raw = array.floats.map { UInt64($0.bitPattern) }
    }
    FuzzCheck.require(elements * width <= bytes.count, "\(elements) elements of \(width) B read from \(bytes.count) B")
    let again: NpyArray
    do {
        again = try NpyArray.parse(NpyEncoding.encode(descr: array.dtype.rawValue, shape: array.shape,
                                                      data: NpyEncoding.littleEndian(raw, width: width)))
    } catch {
        FuzzCheck.require(false, "the re-encoded array is refused: \(error)")
        return 0
    }
    FuzzCheck.require(again.dtype == array.dtype && again.shape == array.shape && again.integers == array.integers
                          && again.floats.map(\.bitPattern) == array.floats.map(\.bitPattern),
                      "the array changed across write → read")
    return 0
}

/// The executable's entry point (SwiftPM links `FuzzNpy_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzNpy_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
