"""Reporting: results.json, metrics (with the evaluate module), model cards (with the model in plain words) and the export of a run."""
