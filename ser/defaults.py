"""Defaults shared by the command line (predict_ser.py), the demo (app.py) and the predictor: defined once here."""

# The embedded default model, relative to the repository root: trained from scratch here on Emo-DB, RAVDESS and EMOVO.
DEFAULT_MODEL = "models/ser-cnn-mixture"

# Long recordings (predictor timeline, predict_ser.py --timeline, the demo): speech segments longer than this are
# classified in equal pieces no longer than it; the demo smooths scores over this many seconds.
SEGMENT_SECONDS = 6.0
SMOOTH_SECONDS = 10.0
RUNTIME = "fp32"
# A prediction whose top probability (calibrated, where the model was) is below this is flagged "uncertain".
UNCERTAIN_BELOW = 0.5
