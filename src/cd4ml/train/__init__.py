"""Training: the time-based split, estimators, and the pipeline that runs it all."""
