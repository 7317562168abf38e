"""Measurement code that is not the product: one module per experiment, run with `python -m experiments.<name>`.

Each module's docstring says what it measures, how to run it and what it measured. The library
(toolchain/) never imports from here; an experiment imports the library like any user would.
"""
