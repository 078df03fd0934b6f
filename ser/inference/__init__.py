"""Inference: the predictor, its CPU runtimes, prediction rows, timelines, words, archives and batch prediction."""
