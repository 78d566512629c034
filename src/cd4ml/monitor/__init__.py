"""Monitoring: the prediction store, actuals, drift and the retraining policy."""
