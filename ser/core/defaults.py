"""Defaults shared by the command line (predict_ser.py), the demo (app.py) and the predictor: defined once here."""

# The embedded default model, relative to the repository root: a head trained here on Emo-DB, RAVDESS and EMOVO over
# the frozen Whisper base encoder, cut to its first 3 layers (configs/mixture.yaml).
DEFAULT_MODEL = "models/ser-whisper-mixture"

# Long recordings (predictor timeline, predict_ser.py --timeline, the demo): speech segments longer than this are
# classified in equal pieces no longer than it; the demo smooths scores over this many seconds.
SEGMENT_SECONDS = 6.0
SMOOTH_SECONDS = 10.0
# The predictor's runtime (ser/inference/runtime.py): "onnx" is float32 like fp32, so exact, and the fastest exact one
# (benchmarks/default_runtimes.py; docs/results.md's runtime table, per CPU class). The int8 runtimes and bf16 trade
# agreement, which depends on the CPU, for speed: named explicitly.
RUNTIME = "onnx"
# A prediction whose top probability (calibrated, where the model was) is below this is flagged "uncertain".
UNCERTAIN_BELOW = 0.5
# The model card's section in plain words (ser/reporting/description.py writes it), which the demo shows as "About the model".
PLAIN_WORDS_HEADING = "## In plain words"
