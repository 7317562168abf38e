"""TF1 frozen-graph tarball (DeepLab research release) -> FloatModel.

The research graph maps `ImageTensor:0` (uint8 [1, H, W, 3], any size) through resize, pad and
normalisation to the network, then upsamples, crops and takes the argmax into
`SemanticPredictions:0`. That pre/post-processing does not belong in a mobile model: the network
is cut between its normalized input (registry `graph.normalized_input`, `sub_7:0`) and its logits
(`graph.logits`, `ResizeBilinear_2:0`), with the input fixed to the registry's size.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError
from ..registry import ModelEntry
from .float_model import FloatModel, save_pixel_model


def read_graph_def(path: Path, member: str = "frozen_inference_graph.pb"):
    """The GraphDef inside a .tar.gz (or a bare .pb); truncated or corrupt files are ModelFormatError."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    path = Path(path)
    try:
        if path.suffix == ".pb":
            data = path.read_bytes()
        else:
            with tarfile.open(path, "r:*") as tar:
                names = [m for m in tar.getmembers() if m.name.endswith(member)]
                if not names:
                    raise ModelFormatError(
                        f"{path.name} has no member ending in {member!r}",
                        where=str(path),
                        fix="pass the DeepLab research tarball (…_2018_01_29.tar.gz)",
                    )
                member_file = tar.extractfile(names[0])
                if member_file is None:
                    raise ModelFormatError(
                        f"{path.name}: {names[0].name} is not a regular file",
                        where=str(path),
                        fix="pass the DeepLab research tarball (…_2018_01_29.tar.gz)",
                    )
                data = member_file.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ModelFormatError(
            f"cannot read {path.name}: {exc} (truncated or not a tar.gz?)",
            where=str(path),
            fix="download the tarball again and check its SHA-256",
        ) from exc
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf DecodeError
        raise ModelFormatError(
            f"{member} in {path.name} is not a valid GraphDef: {exc}", where=str(path), fix="download the tarball again"
        ) from exc
    return graph_def


def _check_tensors(graph_def, names: list[str], path: Path) -> None:
    nodes = {n.name for n in graph_def.node}
    missing = [t for t in names if t.split(":")[0] not in nodes]
    if missing:
        raise ModelFormatError(
            f"frozen graph lacks tensor(s) {missing}",
            where=str(path),
            fix="check the graph.* tensor names of this model in models/registry.toml",
        )


def cut_network(graph_def, normalized_input: str, logits: str, input_hw: tuple[int, int]):
    """A function normalized NHWC float32 -> logits, from the frozen graph's inner network."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    h, w = input_hw

    def _imported(x):
        (out,) = tf.compat.v1.import_graph_def(
            graph_def, input_map={normalized_input: x}, return_elements=[logits], name="net"
        )
        return out

    wrapped = tf.compat.v1.wrap_function(_imported, [tf.TensorSpec([1, h, w, 3], tf.float32)])
    return wrapped


def import_frozen_graph(entry: ModelEntry, path: Path, workdir: Path, *, with_labels: bool = False):

    g = entry.extra.get("graph", {})
    names = [
        g.get("image_tensor", "ImageTensor:0"),
        g.get("predictions_tensor", "SemanticPredictions:0"),
        g.get("normalized_input", "sub_7:0"),
        g.get("logits", "ResizeBilinear_2:0"),
    ]
    graph_def = read_graph_def(Path(path), entry.extra.get("member", "frozen_inference_graph.pb"))
    _check_tensors(graph_def, names, Path(path))
    net = cut_network(graph_def, names[2], names[3], entry.input.size)
    out_name = entry.outputs[0]["name"]
    out_dir = Path(workdir) / (f"{entry.id}_float" + ("_labels" if with_labels else ""))
    save_pixel_model(
        lambda x: [net(x)],
        input_hw=entry.input.size,
        scale=entry.input.scale,
        offset=entry.input.offset,
        output_names=[out_name],
        out_dir=out_dir,
        with_labels=with_labels,
    )
    return FloatModel(
        entry.id,
        out_dir,
        entry.input.size,
        ["labels"] if with_labels else [out_name],
        Path(path),
        entry.source_format,
        notes={"cut": {"input": names[2], "output": names[3]}},
    )


def run_full_graph(graph_def, image_uint8, tensors=("ImageTensor:0", "SemanticPredictions:0")):
    """Run the original graph end to end (for tests and import checks): uint8 HxWx3 -> labels."""
    # TensorFlow: ~3 s to import, so it loads only when a conversion runs (`portrait --help` stays fast)
    import tensorflow as tf

    def _imported(x):
        (out,) = tf.compat.v1.import_graph_def(
            graph_def, input_map={tensors[0]: x}, return_elements=[tensors[1]], name="full"
        )
        return out

    h, w = image_uint8.shape[:2]
    fn = tf.compat.v1.wrap_function(_imported, [tf.TensorSpec([1, h, w, 3], tf.uint8)])
    return np.asarray(fn(tf.constant(image_uint8[None])))
