/// Why an audio file could not be used, naming the file. In an evaluation these are per-utterance
/// errors for the report, not reasons to stop.
public enum AudioFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing exists at the path.
    case fileNotFound(path: String)
    /// libsndfile could not open or decode it (corrupt, truncated header, unsupported format, a
    /// directory…); `reason` is libsndfile's message.
    case unreadable(path: String, reason: String)
    /// The file opened but holds no audio frames.
    case noAudio(path: String)
    /// The header claims a sample rate or channel count that makes no sense.
    case invalidFormat(path: String, sampleRate: Int, channels: Int)
    /// Writing failed (no space, no permission, a format libsndfile cannot write).
    case unwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case let .fileNotFound(path):
            "audio: \(path) does not exist; check the manifest's audio path or the synthesizer's output"
        case let .unreadable(path, reason):
            "audio: cannot read \(path) (libsndfile: \(reason)); the file is corrupt, truncated or not in a format libsndfile supports (WAV, FLAC, OGG, …)"
        case let .noAudio(path):
            "audio: \(path) contains no audio frames; the synthesizer produced an empty file"
        case let .invalidFormat(path, sampleRate, channels):
            "audio: \(path) declares \(sampleRate) Hz and \(channels) channels, which cannot be decoded; regenerate the file"
        case let .unwritable(path, reason):
            "audio: cannot write \(path) (\(reason)); check that its directory exists, is writable and has space"
        }
    }
}
