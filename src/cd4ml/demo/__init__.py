"""`cd4ml demo`: the whole CD4ML story on a bundled example (see story.py)."""

# Each names a module of this package whose `EXAMPLE` is its `DemoExample`; the first is the default.
EXAMPLES = ("groceries", "churn")
