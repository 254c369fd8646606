# A stand-in for the IndexTTS-2 package (edu-ide/index-tts fork), for tests of
# examples/synthesizers/indextts2_synth.py without the real weights. See infer_v2.py.
