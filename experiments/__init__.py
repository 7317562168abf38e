"""Measurement code that is not the product: `python -m experiments.<name>`."""
