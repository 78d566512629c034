"""`cd4ml demo`: the whole CD4ML story on the bundled grocery world (see story.py)."""
