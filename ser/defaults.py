"""Defaults shared by the command line (predict_ser.py), the demo (app.py) and the predictor: defined once here."""

# The embedded default model, relative to the repository root: the Emo-DB model trained from scratch here.
DEFAULT_MODEL = "models/ser-cnn-emodb"
