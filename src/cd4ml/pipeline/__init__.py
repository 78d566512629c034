"""`cd4ml run` as stages: pin -> prepare (load, split, features) -> fit -> evaluate -> register -> gate
-> promote, each a function with a typed result (`stages.py`, `publish.py`), run by `run.py`."""
