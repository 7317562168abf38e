"""Importers: every source format becomes one `FloatModel`, a SavedModel that takes RGB pixels.

The exported models take RGB pixels in [0, 255] (float32 for float variants, uint8 for int8) and
apply the registry's normalization (pixel * scale + offset) inside, so a uint8 input maps exactly
onto the network's float input. Formats: float .tflite (op by op, `tflite_graph`), TF1 frozen-graph
tarball (`frozen_graph`), Keras / SavedModel (`keras_model`). Not for: quantization (quantize/).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RegistryError
from ..registry import ModelEntry
from .float_model import INPUT_NAME, SIGNATURE, FloatModel, save_pixel_model
from .frozen_graph import import_frozen_graph
from .keras_model import import_keras
from .tflite_graph import import_tflite

__all__ = ["INPUT_NAME", "SIGNATURE", "FloatModel", "import_model", "save_pixel_model"]


def import_model(
    entry: ModelEntry, path: Path, workdir: Path, *, outputs: list[int] | None = None, with_labels: bool = False
) -> FloatModel:
    """Dispatch on the registry's source format."""
    fmt = entry.source_format
    if fmt == "tflite":
        return import_tflite(entry, path, workdir, outputs=outputs, with_labels=with_labels)
    if fmt == "frozen_graph_tarball":
        return import_frozen_graph(entry, path, workdir, with_labels=with_labels)
    if fmt in ("keras", "saved_model"):
        return import_keras(entry, path, workdir, with_labels=with_labels)
    raise RegistryError(
        f"model {entry.id!r}: unknown source_format {fmt!r}",
        fix="use tflite, frozen_graph_tarball, keras or saved_model",
    )
