"""Speech emotion recognition toolkit."""
