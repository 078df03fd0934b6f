"""Training: arguments, the fold loop, the feature cache, encoders, the Whisper converter, calibration, run outputs and adaptation."""
