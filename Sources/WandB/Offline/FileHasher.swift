import Dispatch

/// Hashes files (`MD5.hashFile`) on a dispatch queue of its own rather than on the caller's
/// thread: a checkpoint is gigabytes, and reading it on Swift's cooperative pool (inside the W&B
/// outbox actor) would hold one of its few threads for seconds. The caller suspends until the
/// hash is done.
public enum FileHasher {
    /// One file at a time: hashing is bound by the disk, and a second concurrent read of another
    /// checkpoint would only slow both.
    private static let queue = DispatchQueue(label: "tts.wandb.file-hasher", qos: .utility)

    /// The MD5 digest and size of each file, in order.
    /// - Throws: ``OfflineRunError`` when a file cannot be read.
    public static func md5(paths: [String]) async throws -> [(digest: [UInt8], size: Int64)] {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[(digest: [UInt8], size: Int64)], any Error>) in
            queue.async {
                continuation.resume(with: Result { try paths.map { try MD5.hashFile(path: $0) } })
            }
        }
    }
}
