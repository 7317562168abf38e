"""How the importer writes a leaky ReLU before int8 conversion, so that a file can round it the same on
every kernel set.

int8 LEAKY_RELU is requantized differently by XNNPACK and by the reference kernels: on one op with
identical int8 input the two differ by one step on ~14 % of values, and the reference kernel's
negative branch sits 0.26 step low on average (python -m experiments.leaky_relu_forms). The same
function as one PRELU op (relu(x) + (-alpha) * relu(-x) with a per-channel slope, the pattern the TFLite
converter fuses) or as relu(x) + min(alpha * x, 0) (RELU, MUL, MINIMUM, ADD) is computed bit-identically
by both kernel sets on that one op. On a whole model that is not the end of it: on PyDNet++ (36 leaky
ReLUs in series) both rewrites close most of the XNNPACK-vs-reference gap but lose accuracy on both
kernel sets (figures in export/recipes/pydnet_pp_mobile.toml), so the default stays the op.

Forms (recipe `[ladder] w8a8 = { leaky_relu = "..." }`):
    "op"        tf.nn.leaky_relu -> one LEAKY_RELU op (the default; float files always use it)
    "prelu"     relu(x) + (-alpha) * relu(-x) -> one PRELU op
    "relu_min"  relu(x) + min(alpha * x, 0) -> RELU, MUL, MINIMUM, ADD
Each is the same float function bit for bit (x > 0: x + 0; x < 0: alpha * x; tests/test_leaky_relu_forms.py).

Not for: other activations (tflite_graph.py).
"""

from __future__ import annotations

import numpy as np

FORMS = ("op", "prelu", "relu_min")


def leaky_relu(tf, x, alpha: float, form: str = "op"):
    """max(x, alpha * x) for 0 < alpha < 1, written in `form` (see the module docstring)."""
    if form == "op":
        return tf.nn.leaky_relu(x, alpha=alpha)
    if form == "prelu":
        channels = int(x.shape[-1])
        slope = tf.constant(np.full((1,) * (len(x.shape) - 2) + (channels,), -alpha, np.float32))
        return tf.nn.relu(x) + slope * tf.nn.relu(-x)
    if form == "relu_min":
        return tf.nn.relu(x) + tf.minimum(x * np.float32(alpha), np.float32(0.0))
    raise ValueError(f"unknown leaky ReLU form {form!r}; use one of {FORMS}")
