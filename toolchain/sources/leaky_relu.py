"""How the importer writes a leaky ReLU, so that an int8 file rounds it the same on every kernel set.

int8 LEAKY_RELU is requantized differently by XNNPACK and by the reference kernels: on one op with
identical int8 input, the two differ by one step on ~14 % of values and the reference kernel's
negative branch sits 0.26 step low on average (experiments/leaky_relu_forms.py). The bias is
systematic, so 36 leaky ReLUs in series (PyDNet++) add it up. The same function written as a PRELU
with a constant per-channel slope (relu(x) + (-alpha) * relu(-x), the pattern the TFLite converter
fuses into one PRELU op) is one int8 op that both kernel sets compute bit-identically, with the same
error against the exact value as XNNPACK's leaky ReLU.

Forms (recipe `[ladder] w8a8 = { leaky_relu = "prelu" }`):
    "op"     tf.nn.leaky_relu -> one LEAKY_RELU op (the default; float files always use it)
    "prelu"  relu(x) + (-alpha) * relu(-x) -> one PRELU op; in float the same value bit for bit
             (x > 0: x + (-alpha) * 0; x < 0: 0 + (-alpha) * (-x) = alpha * x)

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
