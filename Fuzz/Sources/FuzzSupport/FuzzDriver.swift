import CLibFuzzer

/// Starts libFuzzer from a fuzz target's `main`.
///
/// SwiftPM links every executable with `main` aliased to `<Module>_main`, so a fuzz target cannot
/// use libFuzzer's own `main`; instead each defines `<Module>_main` and calls ``run(_:_:_:)``,
/// which passes the command line to libFuzzer's driver (`LLVMFuzzerRunDriver`), the same driver
/// libFuzzer's `main` calls.
public enum FuzzDriver {
    /// The signature of `LLVMFuzzerTestOneInput`.
    public typealias TestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

    /// Runs libFuzzer on `target` with the process's arguments; returns its exit status.
    public static func run(
        _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ target: TestOneInput
    ) -> CInt {
        var count = argc
        var vector = argv
        return LLVMFuzzerRunDriver(&count, &vector, target)
    }
}
