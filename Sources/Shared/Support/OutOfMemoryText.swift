/// Recognises CUDA running out of memory in a trainer's or runner's output — the one definition
/// both the worker (to classify a trainer's exit as OOM and retry with a smaller micro-batch) and
/// the coordinator (the `oom` alert rule on log lines) use.
///
/// Only PyTorch's and CUDA's own out-of-memory texts count: `torch.OutOfMemoryError` (PyTorch ≥
/// 2.5), `torch.cuda.OutOfMemoryError` (older), the message `CUDA out of memory`, the CUDA
/// runtime's `CUDA error: out of memory` and cuBLAS's `CUBLAS_STATUS_ALLOC_FAILED` — never a line
/// that merely mentions `Exception`, `RuntimeError`, "OOM" or host memory (the upstream monitor's
/// false positives).
public enum OutOfMemoryText {
    /// The texts that mark an out-of-memory failure (matched case-sensitively, anywhere in a line).
    public static let markers = [
        "torch.OutOfMemoryError",
        "torch.cuda.OutOfMemoryError",
        "CUDA out of memory",
        "CUDA error: out of memory",
        "CUBLAS_STATUS_ALLOC_FAILED",
    ]

    /// True if `line` reports CUDA running out of memory.
    public static func matches(_ line: some StringProtocol) -> Bool {
        markers.contains { line.contains($0) }
    }

    /// The first line of `text` (e.g. a stderr tail) that reports an out-of-memory failure.
    public static func firstLine(in text: some StringProtocol) -> String? {
        text.split(whereSeparator: \.isNewline).first(where: { matches($0) }).map { String($0) }
    }
}
