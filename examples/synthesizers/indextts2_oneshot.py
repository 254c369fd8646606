#!/usr/bin/env python3
"""IndexTTS-2 as a one-shot `command` synthesizer (docs/SYNTHESIZER.md): one process per
utterance, which loads the model, writes OUTPUT and exits 0 (non-zero on failure).

    synthesizer: {command: [python, examples/synthesizers/indextts2_oneshot.py, --checkpoint, "{checkpoint}",
                            --model-dir, /models/IndexTTS-2, --prompt, "{prompt_audio}", --text, "{text}",
                            --output, "{output}"], timeout_seconds: 300}

Simple, but every utterance pays the model load (tens of seconds): prefer the persistent
indextts2_synth.py for evaluations. Same flags as that script, plus --prompt, --text, --output.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import indextts2_synth as synth  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompt", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--output", required=True)
    own, rest = p.parse_known_args(argv)
    args = synth.parse_args(rest)
    try:
        tts = synth.load(args)
        synth.synthesize(tts, {"id": os.path.basename(own.output), "text": own.text,
                               "prompt_audio": own.prompt, "output": own.output}, args)
    except Exception as e:  # noqa: BLE001
        print(f"indextts2_oneshot: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
