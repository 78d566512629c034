"""Data: read a source, validate it, store it as a versioned Delta table."""
