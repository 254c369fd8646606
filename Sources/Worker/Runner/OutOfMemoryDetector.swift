/// Recognises CUDA running out of memory in a trainer's stderr, so that the shard is retried with a
/// smaller micro-batch instead of counted as an ordinary failure.
///
/// Only PyTorch's own out-of-memory texts count — `torch.OutOfMemoryError` (PyTorch ≥ 2.5),
/// `torch.cuda.OutOfMemoryError` (older), the message `CUDA out of memory`, and the CUDA runtime's
/// `CUDA error: out of memory` — never a line that merely mentions `Exception`, `RuntimeError` or
/// "OOM" (the upstream monitor's false positives).
public enum OutOfMemoryDetector {
    /// The texts that mark an out-of-memory failure (matched case-sensitively, anywhere in a line).
    public static let markers = [
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "CUDA out of memory",
        "CUDA error: out of memory",
    ]

    /// True if `line` reports CUDA running out of memory.
    public static func isOutOfMemory<S: StringProtocol>(_ line: S) -> Bool {
        markers.contains { line.contains($0) }
    }

    /// The first line of `text` (e.g. the stderr tail) that reports an out-of-memory failure.
    public static func firstOutOfMemoryLine<S: StringProtocol>(in text: S) -> String? {
        text.split(whereSeparator: \.isNewline).first(where: { isOutOfMemory($0) }).map { String($0) }
    }
}
