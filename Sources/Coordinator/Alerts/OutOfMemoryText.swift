/// Recognises CUDA out-of-memory in a runner's stderr: PyTorch's own messages, not any line
/// that says "Exception".
public enum OutOfMemoryText {
    /// The substrings that mean a CUDA OOM (`torch.OutOfMemoryError`, its older
    /// `torch.cuda.OutOfMemoryError` spelling, and the message text both carry).
    public static let markers = ["CUDA out of memory", "torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError",
                                 "CUBLAS_STATUS_ALLOC_FAILED"]

    /// True when `line` reports a CUDA out-of-memory error.
    public static func matches(_ line: some StringProtocol) -> Bool {
        markers.contains { line.contains($0) }
    }
}
