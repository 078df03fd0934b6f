"""Shared core: audio input, speaker statistics and the defaults every stage reads."""
