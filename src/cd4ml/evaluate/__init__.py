"""Evaluation: metrics, the naive baseline, slices and plots."""
