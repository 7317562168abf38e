"""Parity: how far a quantized model strays from its float model, and whether that is within budget.

`metrics` holds pure functions on arrays (segmentation, depth, any tensor); `gate` runs a float /
quantized pair over an image set and judges the figures against the recipe's budgets.
"""
