/// One of the real trainer's `[Info]` lines that say something happened to the run (as printed by
/// `trainers/train_gpt_v2.py` of edu-ide/index-tts 7de3cca):
///
///     [Info] Resumed from /out/latest_full.pth at epoch 0, step 1000.
///     [Info] New best validation text_loss: 5.5996. Saving best_model.pth...
///     [Info] Triggering CPU inference for sample: /out/best_val_5.5996.wav
///     Training complete.
public enum TrainerNotice: Sendable, Equatable {
    /// The trainer loaded `checkpoint` and continues after `step` (`epoch` is 0-based there).
    case resumed(checkpoint: String, epoch: Int, step: Int64)
    /// A validation lowered the best validation text loss; `best_model.pth` is being written.
    case newBest(textLoss: Double)
    /// The trainer started its sample-inference child for `output`.
    case sampleInference(output: String)
    /// The trainer finished its loop (the final checkpoints are written).
    case complete

    /// The notice in a stdout line, or nil.
    public static func parse(_ line: Substring) -> TrainerNotice? {
        if line.hasPrefix("Training complete") { return .complete }
        guard let r = line.range(of: "[Info] ") else { return nil }
        let rest = line[r.upperBound...]
        if rest.hasPrefix("Resumed from "), let at = rest.range(of: " at epoch ", options: .backwards) {
            let path = String(rest[rest.index(rest.startIndex, offsetBy: "Resumed from ".count)..<at.lowerBound])
            let tail = rest[at.upperBound...] // "0, step 10."
            let parts = tail.split(separator: ",")
            guard parts.count == 2, let epoch = Int(parts[0].trimmingCharacters(in: .whitespaces)) else { return nil }
            var stepText = parts[1].trimmingCharacters(in: .whitespaces)
            guard stepText.hasPrefix("step ") else { return nil }
            stepText = String(stepText.dropFirst(5))
            if stepText.hasSuffix(".") { stepText.removeLast() }
            guard let step = Int64(stepText) else { return nil }
            return .resumed(checkpoint: path, epoch: epoch, step: step)
        }
        if rest.hasPrefix("New best validation text_loss: ") {
            var value = rest.dropFirst("New best validation text_loss: ".count)
            if let dot = value.range(of: ". Saving") { value = value[..<dot.lowerBound] }
            return Double(value).map { .newBest(textLoss: $0) }
        }
        if rest.hasPrefix("Triggering CPU inference for sample: ") {
            return .sampleInference(output: String(rest.dropFirst("Triggering CPU inference for sample: ".count)))
        }
        return nil
    }

    /// The notice in a stdout line, or nil.
    public static func parse(_ line: String) -> TrainerNotice? { parse(line[...]) }
}
