"""cd4ml: Continuous Delivery for Machine Learning.

Code, data and model move through one pipeline: versioned data -> features ->
train -> evaluate -> acceptance gate -> registry release -> serve -> monitor.
"""

__version__ = "0.1.0"
