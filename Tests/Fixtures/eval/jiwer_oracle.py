"""jiwer oracle for JiwerOracleTests.swift.

Reads a JSON array of cases from stdin and writes a JSON array of results (same order) to stdout.

A case: {"unit": "words" | "chars", "refs": [str, ...] | str, "hyps": [str, ...] | str}
(a str is passed to jiwer as a str, a list as a list: jiwer wraps a str as [str] itself).

A result: {"error": str} when jiwer raises, else
  {"hits", "substitutions", "deletions", "insertions": int,
   "measures": {name: [repr(float(value)), type(value).__name__]} for wer/mer/wil/wip (words) or cer (chars),
   "references", "hypotheses": the transformed token lists,
   "alignments": [[[type, ref_start, ref_end, hyp_start, hyp_end], ...], ...],
   "utterance_mean": repr(sum(rates) / len(rates)) over per-pair jiwer.wer/cer, or null when refs is a str or the lists differ}
Floats travel as repr() strings, which round-trip exactly.
"""
import json
import sys

import jiwer


def run(case):
    refs, hyps, unit = case["refs"], case["hyps"], case["unit"]
    try:
        out = jiwer.process_words(refs, hyps) if unit == "words" else jiwer.process_characters(refs, hyps)
    except ValueError as error:
        return {"error": str(error)}
    names = ["wer", "mer", "wil", "wip"] if unit == "words" else ["cer"]
    result = {
        "hits": out.hits,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "measures": {n: [repr(float(getattr(out, n))), type(getattr(out, n)).__name__] for n in names},
        "references": out.references,
        "hypotheses": out.hypotheses,
        "alignments": [[[c.type, c.ref_start_idx, c.ref_end_idx, c.hyp_start_idx, c.hyp_end_idx] for c in sentence]
                       for sentence in out.alignments],
        "utterance_mean": None,
    }
    if isinstance(refs, list) and isinstance(hyps, list) and len(refs) == len(hyps) and refs:
        score = jiwer.wer if unit == "words" else jiwer.cer
        rates = [score(r, h) for r, h in zip(refs, hyps)]
        result["utterance_mean"] = repr(float(sum(rates) / len(rates)))
    return result


def main():
    cases = json.load(sys.stdin)
    json.dump([run(c) for c in cases], sys.stdout, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
