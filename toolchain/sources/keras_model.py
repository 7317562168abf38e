"""Keras (.keras / .h5) or SavedModel directory -> FloatModel, directly.

The model must take NHWC float input of the registry's size and normalization; the pixel
normalization is prepended here like for every other source.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError
from ..registry import ModelEntry
from .float_model import FloatModel, save_pixel_model


def load_callable(path: Path):
    """A callable NHWC -> output tensor(s) from a .keras/.h5 file or a SavedModel folder."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"model not found: {path}", fix="check the path")
    try:
        if path.is_dir():
            loaded = tf.saved_model.load(str(path))
            if "serving_default" not in getattr(loaded, "signatures", {}):
                raise ModelFormatError(
                    f"SavedModel {path} has no serving_default signature",
                    fix="export it with a serving_default signature",
                )
            sig = loaded.signatures["serving_default"]
            in_name = list(sig.structured_input_signature[1])[0]
            keys = sorted(sig.structured_outputs)
            return lambda x: [sig(**{in_name: x})[k] for k in keys], loaded
        # Keras imports TensorFlow (~3 s): loaded only when a Keras model is imported
        import keras

        model = keras.models.load_model(str(path), compile=False)
        return (lambda x: _as_list(model(x))), model
    except ModelFormatError:
        raise
    except Exception as exc:
        raise ModelFormatError(
            f"cannot load {path.name} as Keras or SavedModel: {exc}",
            where=str(path),
            fix="pass a .keras/.h5 file or a SavedModel folder",
        ) from exc


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def freeze(fn, input_hw):
    """Variables -> constants, so the converter sees plain weights (no READ_VARIABLE ops)."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(lambda x: fn(x)).get_concrete_function(tf.TensorSpec([1, *input_hw, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    return lambda x: _as_list(frozen(x))


def import_keras(entry: ModelEntry, path: Path, workdir: Path, *, with_labels: bool = False):

    fn, keep_alive = load_callable(path)
    body = freeze(fn, entry.input.size)
    del keep_alive
    names = [o["name"] for o in entry.outputs]
    out_dir = Path(workdir) / (f"{entry.id}_float" + ("_labels" if with_labels else ""))
    save_pixel_model(
        body,
        input_hw=entry.input.size,
        scale=entry.input.scale,
        offset=entry.input.offset,
        output_names=names,
        out_dir=out_dir,
        with_labels=with_labels,
    )
    return FloatModel(
        entry.id, out_dir, entry.input.size, ["labels"] if with_labels else names, Path(path), entry.source_format
    )
