import Foundation

/// What a torch checkpoint says about itself, read without torch: its top-level keys and the
/// training progress the trainer saved in it.
public struct TorchCheckpointInfo: Sendable, Equatable {
    /// The top-level `"step"` when it is an int that fits in 64 bits (not a bool, float or tensor).
    public var step: Int64?
    /// The top-level `"epoch"` when it is an int that fits in 64 bits.
    public var epoch: Int64?
    /// The top-level dict's keys, in the order they were saved (non-string keys as Python would
    /// print them).
    public var keys: [String]
    /// Whether the top-level `"optimizer"` is present and not None.
    public var hasOptimizerState: Bool
    /// Whether the top-level `"scheduler"` is present and not None.
    public var hasSchedulerState: Bool
    /// The file's size in bytes.
    public var size: Int64

    public init(step: Int64?, epoch: Int64?, keys: [String], hasOptimizerState: Bool, hasSchedulerState: Bool, size: Int64) {
        self.step = step
        self.epoch = epoch
        self.keys = keys
        self.hasOptimizerState = hasOptimizerState
        self.hasSchedulerState = hasSchedulerState
        self.size = size
    }
}

/// A checkpoint file that is not a complete, readable `torch.save` of a dict.
public struct TorchCheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file does not exist or cannot be opened.
        case missing
        /// The file was cut short (no end record, or entries running past the end), or its
        /// directory does not fit its size.
        case truncated
        /// Not a ZIP archive (for example torch's legacy pre-1.6 format).
        case notZip
        /// A ZIP archive without a `<archive>/data.pkl`.
        case noPickle
        /// `data.pkl` is compressed or encrypted (torch stores it uncompressed).
        case compressed
        /// `data.pkl` fails its CRC, is not a pickle this reader understands, or is too large.
        case badPickle
        /// The saved object is not a dict.
        case notADict
    }

    public let code: Code
    public let path: String
    public let message: String

    public init(code: Code, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String {
        let advice: String = switch code {
        case .missing: "check the path and the worker's permissions"
        case .truncated: "the trainer is still writing it or died while saving; wait for it to finish, or use an earlier checkpoint"
        case .notZip: "re-save it with torch.save in the default (zip) format of PyTorch 1.6 or later"
        case .noPickle: "this is not a torch.save checkpoint; point the worker at the trainer's .pth files"
        case .compressed: "the archive was repacked with compression; use the file torch.save wrote"
        case .badPickle: "the file is corrupt or was not written by torch.save; use an earlier checkpoint"
        case .notADict: "the trainer must torch.save a dict (with \"model\", \"step\", …)"
        }
        return "checkpoint \(path) (\(code.rawValue)): \(message); \(advice)"
    }
}

/// Reads a PyTorch checkpoint (`torch.save`, PyTorch ≥ 1.6) without libtorch or Python.
///
/// Such a file is a ZIP archive of stored (uncompressed) entries: `<archive>/data.pkl`, a
/// pickle of the saved object in which tensors are persistent ids, `<archive>/data/<key>` for each
/// storage, and `<archive>/version` (newer versions add `byteorder` and `.data/…`); `<archive>` is
/// the file's stem in older versions and `archive` in newer ones. ``inspect(path:)`` reads only the
/// end records, the central directory and `data.pkl` — a few hundred kilobytes of a 7 GB
/// checkpoint — never the tensors.
public enum TorchCheckpointReader {
    /// A `data.pkl` larger than this is refused as `badPickle` (a large model's is about a megabyte).
    public static let maximumPickleSize: Int64 = 64 << 20

    /// Checks that the file is a complete torch checkpoint and reads its top-level dict.
    ///
    /// The central directory must be consistent with the file (see ``ZipCentralDirectory``), the
    /// `data.pkl` entry must be stored, lie inside the file and match its CRC-32 (when the writer
    /// recorded one), and the pickle must decode to a dict.
    public static func inspect(path: String) throws(TorchCheckpointError) -> TorchCheckpointInfo {
        let file: PositionedFile
        do { file = try PositionedFile(path: path) } catch { throw converted(error) }
        return try inspect(file)
    }

    /// Whether the file is a complete ZIP archive: it ends with an end record and its central
    /// directory fits the file's size (every entry's data ends before the directory). Reads only
    /// the tail of the file; does not decode `data.pkl`.
    public static func isComplete(path: String) -> Bool {
        (try? ZipCentralDirectory.read(path: path)) != nil
    }

    /// ``inspect(path:)`` on an open file (tests check its `bytesRead`).
    static func inspect(_ file: PositionedFile) throws(TorchCheckpointError) -> TorchCheckpointInfo {
        let path = file.path
        let directory: ZipCentralDirectory
        do { directory = try ZipCentralDirectory.read(file) } catch { throw converted(error) }

        guard let entry = directory.entries.first(where: isPickleEntry) else {
            let names = directory.entries.prefix(5).map(\.name).joined(separator: ", ")
            throw TorchCheckpointError(code: .noPickle, path: path,
                message: "no <archive>/data.pkl among its \(directory.entries.count) entries (\(names.isEmpty ? "none" : names))")
        }
        guard entry.method == 0, !entry.isEncrypted else {
            throw TorchCheckpointError(code: .compressed, path: path,
                message: "\(entry.name) is \(entry.isEncrypted ? "encrypted" : "compressed (method \(entry.method))"), not stored")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw TorchCheckpointError(code: .truncated, path: path,
                message: "\(entry.name) is stored but its sizes disagree (\(entry.compressedSize) in the file, \(entry.uncompressedSize) uncompressed)")
        }
        guard entry.compressedSize <= maximumPickleSize else {
            throw TorchCheckpointError(code: .badPickle, path: path,
                message: "\(entry.name) is \(entry.compressedSize) bytes, more than the \(maximumPickleSize) accepted")
        }
        let bytes: [UInt8]
        do {
            let range = try directory.dataRange(of: entry, in: file)
            bytes = try file.read(at: range.lowerBound, count: Int(range.upperBound - range.lowerBound))
        } catch { throw converted(error) }
        if entry.crc32 != 0 {
            let crc = ZipCentralDirectory.crc32(bytes)
            guard crc == entry.crc32 else {
                throw TorchCheckpointError(code: .badPickle, path: path,
                    message: "\(entry.name) fails its CRC-32 (\(hex(crc)), the directory says \(hex(entry.crc32))): its bytes were damaged")
            }
        }
        let value: PickleValue
        do { value = try PickleReader.read(bytes) } catch {
            throw TorchCheckpointError(code: .badPickle, path: path, message: "\(entry.name): \(error)")
        }
        guard case .dict(let entries) = value else {
            throw TorchCheckpointError(code: .notADict, path: path,
                message: "the saved object is a \(value.typeName), not a dict")
        }
        func int(_ key: String) -> Int64? {
            if case .int(let v)? = value[key] { return v }
            return nil
        }
        func present(_ key: String) -> Bool {
            guard let v = value[key] else { return false }
            return v != .none
        }
        return TorchCheckpointInfo(
            step: int("step"), epoch: int("epoch"),
            keys: entries.map { entry in
                if case .string(let s) = entry.key { return s }
                return entry.key.description
            },
            hasOptimizerState: present("optimizer"), hasSchedulerState: present("scheduler"),
            size: file.size)
    }

    /// `<archive>/data.pkl`, the archive name being one path component.
    private static func isPickleEntry(_ entry: ZipEntry) -> Bool {
        let parts = entry.name.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 2 && parts[1] == "data.pkl" && !parts[0].isEmpty
    }

    private static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    private static func converted(_ error: ZipArchiveError) -> TorchCheckpointError {
        let code: TorchCheckpointError.Code = switch error.code {
        case .unreadable: .missing
        case .truncated, .inconsistent: .truncated
        case .notZip: .notZip
        }
        return TorchCheckpointError(code: code, path: error.path, message: error.message)
    }
}
