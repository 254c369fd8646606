import Foundation

/// The `python` a command run's trainer and its children find on their PATH.
///
/// The real trainer (edu-ide/index-tts `train_gpt_v2.py`) starts `python tools/infer_cpu_sample.py`
/// after every new best validation with `subprocess.Popen(["python", …])`: with no `python` on
/// the PATH it dies at its first validation, hours into a run. So the worker puts a `python` on
/// the trainer's PATH: the job's `python:` when given, else the interpreter the command itself
/// starts with (`/venv/bin/python3 trainers/train_gpt_v2.py` → that interpreter), as a symbolic
/// link named `python` in a private directory put first on the PATH. When neither exists and no
/// `python` is on the PATH, the run gets a warning that says so at its start.
struct TrainerPython: Sendable {
    /// The PATH to give the trainer, or nil to leave it as it is.
    var path: String?
    /// What to tell the run (no `python` anywhere, a configured one that does not exist).
    var warning: String?
    /// The private directory holding the `python` link (removed by ``cleanUp()``).
    var directory: String?

    func cleanUp() {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// - Parameter directory: where the `python` script goes (beside the worker's spool, in its
    ///   state directory, so a worker killed with SIGKILL leaves nothing behind but this one
    ///   directory, reused next time);
    ///   nil: a new directory under the temporary directory.
    static func prepare(argv: [String], configured: String?, environment: [String: String], workerEnvironment: [String: String],
                        workingDirectory: String?, directory: String? = nil) -> TrainerPython {
        let basePath = environment["PATH"] ?? workerEnvironment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        var interpreter: String?
        var warning: String?
        if let configured {
            let resolved = resolve(configured, path: basePath, workingDirectory: workingDirectory)
            if let resolved { interpreter = resolved } else {
                warning = "python: \(configured) (the job's python) is not an executable file on this worker; the trainer's children fall back to the PATH"
            }
        } else if let first = argv.first, (first as NSString).lastPathComponent.hasPrefix("python") {
            interpreter = resolve(first, path: basePath, workingDirectory: workingDirectory)
        }
        if let interpreter {
            let dir = directory ?? NSTemporaryDirectory() + "tts-python-\(getpid())-\(UUID().uuidString.prefix(8))"
            do {
                try? FileManager.default.removeItem(atPath: dir + "/python")
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                // A script, not a symbolic link: Python finds its venv (pyvenv.cfg) next to the path
                // it was started by, so a link elsewhere would start the base interpreter without
                // the venv's packages.
                let quoted = "'" + interpreter.replacingOccurrences(of: "'", with: "'\\''") + "'"
                let script = "#!/bin/sh\nexec \(quoted) \"$@\"\n"
                guard FileManager.default.createFile(atPath: dir + "/python", contents: Data(script.utf8), attributes: [.posixPermissions: 0o755]) else {
                    throw CocoaError(.fileWriteUnknown)
                }
                return TrainerPython(path: dir + ":" + basePath, warning: warning, directory: dir)
            } catch {
                try? FileManager.default.removeItem(atPath: dir)
                warning = "cannot put \(interpreter) on the trainer's PATH as python: \(error.localizedDescription)"
            }
        }
        if resolve("python", path: basePath, workingDirectory: workingDirectory) == nil {
            warning = (warning.map { $0 + "; " } ?? "") + "no `python` on the trainer's PATH: train_gpt_v2.py starts `python tools/infer_cpu_sample.py` after each new best validation and dies without one; set python: in the job (or start the command with the interpreter)"
        }
        return TrainerPython(path: nil, warning: warning, directory: nil)
    }

    /// An executable's absolute path: `name` itself when it holds a `/` (relative to
    /// `workingDirectory`), else the first match on `path`.
    static func resolve(_ name: String, path: String, workingDirectory: String?) -> String? {
        if name.contains("/") {
            let full = name.hasPrefix("/") ? name : (workingDirectory ?? FileManager.default.currentDirectoryPath) + "/" + name
            return FileManager.default.isExecutableFile(atPath: full) ? full : nil
        }
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
