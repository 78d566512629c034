"""Serving: the prediction service, live release swaps and the prediction log."""
