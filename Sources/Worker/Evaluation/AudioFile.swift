import CSndfile
import Foundation

/// Reads audio files with libsndfile (WAV, FLAC, OGG/Vorbis, AIFF, … whatever the installed
/// libsndfile supports), mixed down to mono.
public enum AudioFile {
    /// Reads `path` as mono float samples at the file's own rate. Channels are mixed down by their
    /// arithmetic mean.
    ///
    /// - Throws: ``AudioFileError`` naming the file: missing, unreadable (corrupt, truncated,
    ///   unsupported), or without audio.
    public static func read(_ path: String) throws(AudioFileError) -> AudioClip {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .fileNotFound(path: path) }
        guard !isDirectory.boolValue else { throw .unreadable(path: path, reason: "is a directory") }
        var info = SF_INFO()
        guard let file = sf_open(path, Int32(SFM_READ), &info) else {
            // sf_strerror(NULL) reports the last sf_open failure of the process: good enough for a
            // message, which is all it is used for.
            throw .unreadable(path: path, reason: String(cString: sf_strerror(nil)))
        }
        defer { sf_close(file) }
        let channels = Int(info.channels), rate = Int(info.samplerate)
        guard channels > 0, rate > 0 else { throw .invalidFormat(path: path, sampleRate: rate, channels: channels) }

        // Read in blocks until libsndfile stops, rather than trusting the header's frame count
        // (a truncated file declares more than it has).
        let blockFrames = 65_536
        var interleaved = [Float](repeating: 0, count: blockFrames * channels)
        var mono: [Float] = []
        mono.reserveCapacity(info.frames > 0 && info.frames < 1 << 31 ? Int(info.frames) : 0)
        while true {
            let got = Int(interleaved.withUnsafeMutableBufferPointer { sf_readf_float(file, $0.baseAddress, sf_count_t(blockFrames)) })
            if got <= 0 { break }
            if channels == 1 {
                mono.append(contentsOf: interleaved[0..<got])
            } else {
                let scale = 1 / Float(channels)
                for frame in 0..<got {
                    var sum: Float = 0
                    for c in 0..<channels { sum += interleaved[frame * channels + c] }
                    mono.append(sum * scale)
                }
            }
        }
        let status = sf_error(file)
        if status != 0 {
            throw .unreadable(path: path, reason: String(cString: sf_strerror(file)))
        }
        guard !mono.isEmpty else { throw .noAudio(path: path) }
        return AudioClip(samples: mono, sampleRate: rate, sourceChannels: channels)
    }

    /// Reads `path` as the input ``VoskRecognizer`` expects: mono, 16-bit, resampled to `sampleRate`
    /// (default 16 kHz) with ``Resampler``.
    public static func readForRecognition(_ path: String, sampleRate: Int = VoskModel.sampleRate) throws(AudioFileError) -> [Int16] {
        try read(path).resampled(to: sampleRate).int16Samples
    }

    /// The container and sample format ``write(_:to:format:)`` produces.
    public enum WriteFormat: Sendable {
        /// WAV, 16-bit PCM.
        case wav16
        /// WAV, 32-bit float.
        case wavFloat
        /// FLAC, 16-bit.
        case flac16

        var code: Int32 {
            switch self {
            case .wav16: Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
            case .wavFloat: Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
            case .flac16: Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
            }
        }
    }

    /// Writes `clip` (mono) to `path` with libsndfile: to a temporary name beside it, then renamed
    /// into place, so a reader never sees half a file. Samples outside [-1, 1] are clipped by
    /// libsndfile's float-to-integer conversion (clipping enabled).
    public static func write(_ clip: AudioClip, to path: String, format: WriteFormat = .wav16) throws(AudioFileError) {
        guard clip.sampleRate > 0 else { throw .invalidFormat(path: path, sampleRate: clip.sampleRate, channels: 1) }
        let tmp = path + ".tmp-\(getpid())"
        var info = SF_INFO()
        info.samplerate = Int32(clip.sampleRate)
        info.channels = 1
        info.format = format.code
        guard sf_format_check(&info) != 0 else { throw .unwritable(path: path, reason: "libsndfile cannot write this format") }
        guard let file = sf_open(tmp, Int32(SFM_WRITE), &info) else {
            throw .unwritable(path: path, reason: String(cString: sf_strerror(nil)))
        }
        _ = sf_command(file, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE))
        let written = clip.samples.withUnsafeBufferPointer { sf_writef_float(file, $0.baseAddress, sf_count_t($0.count)) }
        let error = sf_error(file) != 0 ? String(cString: sf_strerror(file)) : nil
        sf_write_sync(file)
        sf_close(file)
        guard error == nil, written == sf_count_t(clip.samples.count) else {
            unlink(tmp)
            throw .unwritable(path: path, reason: error ?? "wrote \(written) of \(clip.samples.count) frames")
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw .unwritable(path: path, reason: reason)
        }
    }
}
