"""Release: the packaged model artifact and the registry (versions, champion alias, events)."""
