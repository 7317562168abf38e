"""The float model every importer produces: a SavedModel that takes RGB pixels, and its writer.

Not for: reading a source format (frozen_graph.py, keras_model.py, tflite_graph.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SIGNATURE = "serving_default"
INPUT_NAME = "image"


@dataclass
class FloatModel:
    """A float TF model with pixel input, saved as a SavedModel with named outputs."""

    model_id: str
    saved_model_dir: Path
    input_hw: tuple[int, int]
    output_names: list[str]
    source_path: Path
    source_format: str
    notes: dict = field(default_factory=dict)

    def load(self):
        # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
        import tensorflow as tf

        return tf.saved_model.load(str(self.saved_model_dir)).signatures[SIGNATURE]

    def run(self, pixels) -> dict:
        """Run on a float32/uint8 [N, H, W, 3] pixel batch; returns numpy outputs by name."""
        # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
        import tensorflow as tf

        fn = getattr(self, "_fn", None) or self.load()
        self._fn = fn
        out = fn(**{INPUT_NAME: tf.constant(np.asarray(pixels, np.float32))})
        return {k: v.numpy() for k, v in out.items()}


def save_pixel_model(
    body: Callable,
    *,
    input_hw: tuple[int, int],
    scale,
    offset,
    output_names: list[str],
    out_dir: Path,
    with_labels: bool = False,
    track: object | None = None,
) -> Path:
    """Wrap `body(normalized_nhwc) -> list of tensors` as a SavedModel taking pixels [0, 255].

    with_labels adds the ArgMax variant: the first output's channel argmax as uint8 labels.
    track: an object holding variables `body` reads (a Keras model), saved along.
    """
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    h, w = input_hw
    spec = tf.TensorSpec([1, h, w, 3], tf.float32, name=INPUT_NAME)

    scale_t = tf.constant(scale, tf.float32)  # a scalar, or one value per channel
    offset_t = tf.constant(offset, tf.float32)

    def serve(image):
        outs = body(image * scale_t + offset_t)
        if with_labels:
            return {"labels": tf.cast(tf.argmax(outs[0], axis=-1, output_type=tf.int32), tf.uint8)}
        return {name: t for name, t in zip(output_names, outs)}

    module = tf.Module()
    if track is not None:
        module.source = track
    module.serve = tf.function(serve, input_signature=[spec])
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE: module.serve})
    return out_dir
