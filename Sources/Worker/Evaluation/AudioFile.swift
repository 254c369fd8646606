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
}
