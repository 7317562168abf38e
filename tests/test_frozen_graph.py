"""Frozen-graph tarball import (the DeepLab research release format), on a generated graph."""

import numpy as np
import pytest
from builders import deeplab_style_frozen_graph, write_registry, write_tarball

from toolchain.errors import ModelFormatError
from toolchain.registry import load_registry
from toolchain.sources import frozen_graph, import_model

EXTRA = (
    'member = "frozen_inference_graph.pb"\n[models.fg.graph]\nimage_tensor = "ImageTensor:0"\n'
    'predictions_tensor = "SemanticPredictions:0"\nnormalized_input = "sub_7:0"\nlogits = "ResizeBilinear_2:0"\n'
)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    d = tmp_path_factory.mktemp("fg")
    gd = deeplab_style_frozen_graph()
    path = write_tarball(gd, d / "fg.tar.gz")
    entry = load_registry(
        write_registry(d, "fg", "frozen_graph_tarball", "fg.tar.gz", 33, 33, "ResizeBilinear_2", extra=EXTRA)
    )["fg"]
    return gd, path, entry, d


def test_cut_network_matches_the_original_graph(tarball, tmp_path):
    gd, path, entry, _ = tarball
    model = import_model(entry, path, tmp_path)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 33, 33, 3)).astype(np.uint8)
    got = model.run(img)["ResizeBilinear_2"]
    assert got.shape == (1, 33, 33, 21)
    # the full original graph at the net's own size: same labels as the cut network's argmax
    labels = frozen_graph.run_full_graph(gd, img[0])
    assert np.mean(labels[0] == got[0].argmax(-1)) >= 0.999


def test_labels_variant_is_argmax(tarball, tmp_path):
    gd, path, entry, _ = tarball
    logits = import_model(entry, path, tmp_path).run(np.full((1, 33, 33, 3), 100, np.uint8))["ResizeBilinear_2"]
    labels = import_model(entry, path, tmp_path, with_labels=True).run(np.full((1, 33, 33, 3), 100, np.uint8))["labels"]
    assert labels.dtype == np.uint8 and np.array_equal(labels[0], logits[0].argmax(-1))


def test_truncated_tarball_is_a_clear_error(tarball, tmp_path):
    _, path, entry, _ = tarball
    bad = tmp_path / "trunc.tar.gz"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelFormatError, match="truncated|cannot read|not a valid"):
        frozen_graph.read_graph_def(bad)


def test_wrong_tensor_names_are_named(tarball, tmp_path):
    _, path, entry, d = tarball
    import dataclasses

    extra = {**entry.extra, "graph": {**entry.extra["graph"], "logits": "nope:0"}}
    with pytest.raises(ModelFormatError, match="nope"):
        import_model(dataclasses.replace(entry, extra=extra), path, tmp_path)
