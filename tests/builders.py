"""Small generated fixtures: tiny float .tflite models, a DeepLab-format frozen graph tarball,
a registry that points at them. Built by code here, never committed as binaries."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

REGISTRY_TEMPLATE = """
[labels]
voc = {labels}

[models.{mid}]
task = "segmentation"
source_format = "{fmt}"
file = "{file}"
url = "{url}"
sha256 = "{sha}"
license = "test"
labels = "voc"
foreground_classes = {{ person = 15, cat = 8 }}
{extra}
[models.{mid}.input]
name = "x"
size = [{h}, {w}]
layout = "NHWC"
dtype = "float32"
normalization = {{ scale = 0.00784313725490196, offset = -1.0 }}
[[models.{mid}.outputs]]
name = "{out}"
kind = "logits"
shape = [1, {h}, {w}, 21]
meaning = "test logits"
"""

VOC = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tv",
]


def tiny_segmenter_keras(h=33, w=33, classes=21, seed=0):
    """A small DeepLab-shaped Keras net: strided conv, depthwise, pooling branch, concat, resize."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((h, w, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x_in)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    y = layers.Conv2D(8, 1, padding="same")(x)
    x = layers.Add()([x, y])
    pooled = layers.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]))(x)
    pooled = layers.UpSampling2D(size=(x.shape[1], x.shape[2]), interpolation="bilinear")(pooled)
    x = layers.Concatenate()([x, pooled])
    x = layers.Conv2D(classes, 1)(x)
    x = layers.Resizing(h, w, interpolation="bilinear")(x)
    return keras.Model(x_in, x)


def keras_to_tflite(model, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def write_registry(
    folder: Path,
    mid: str,
    fmt: str,
    file: str,
    h: int,
    w: int,
    out: str,
    *,
    sha: str = "",
    url: str = "file:///nonexistent",
    extra: str = "",
) -> Path:
    import json

    path = folder / "registry.toml"
    path.write_text(
        REGISTRY_TEMPLATE.format(
            labels=json.dumps(VOC), mid=mid, fmt=fmt, file=file, url=url, sha=sha, h=h, w=w, out=out, extra=extra
        )
    )
    return path


def deeplab_style_frozen_graph(net_hw=(33, 33), classes=21, seed=0):
    """A GraphDef in the research release's format: ImageTensor:0 uint8 -> ToFloat -> resize to the
    net size -> sub_7 normalisation -> small conv net -> logits -> ResizeBilinear_2 (net size) ->
    resize back to the image -> ArgMax -> SemanticPredictions:0."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    g = tf.Graph()
    h, w = net_hw
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        x = tf.cast(image, tf.float32, name="ToFloat")
        x = tf.compat.v1.image.resize_bilinear(x, [h, w], align_corners=True, name="ResizeBilinear")
        x = tf.subtract(tf.multiply(x, 2.0 / 255.0, name="mul_1"), 1.0, name="sub_7")
        w1 = tf.constant(rng.normal(0, 0.4, (3, 3, 3, 8)).astype(np.float32))
        x = tf.nn.relu6(tf.nn.conv2d(x, w1, strides=2, padding="SAME"))
        w2 = tf.constant(rng.normal(0, 0.4, (1, 1, 8, classes)).astype(np.float32))
        b2 = tf.constant(rng.normal(0, 0.1, (classes,)).astype(np.float32))
        logits = tf.nn.bias_add(tf.nn.conv2d(x, w2, strides=1, padding="SAME"), b2, name="logits/semantic/BiasAdd")
        up = tf.compat.v1.image.resize_bilinear(logits, [h, w], align_corners=True, name="ResizeBilinear_2")
        size = tf.shape(image)[1:3]
        full = tf.compat.v1.image.resize_bilinear(up, size, align_corners=True, name="ResizeBilinear_3")
        tf.identity(tf.argmax(full, axis=3), name="SemanticPredictions")
    return g.as_graph_def()


def write_tarball(graph_def, path: Path, member="deeplabv3_mnv2_pascal_train_aug/frozen_inference_graph.pb") -> Path:
    data = graph_def.SerializeToString()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def tiny_segmenter_project(folder: Path, images: int = 3):
    """A tiny DeepLab-shaped segmenter as a registered .tflite source, plus a few bundled photos as
    parity images: (registry dict, images folder). Shared by the export, ladder and handoff tests."""
    import cv2

    from toolchain.images import bundled_photos
    from toolchain.registry import load_registry, sha256_of

    models = folder / "models"
    models.mkdir()
    keras_to_tflite(tiny_segmenter_keras(), models / "tiny.tflite")
    reg = load_registry(
        write_registry(folder, "tiny", "tflite", "tiny.tflite", 33, 33, "logits", sha=sha256_of(models / "tiny.tflite"))
    )
    folder_images = folder / "images"
    folder_images.mkdir()
    for name, img in list(bundled_photos().items())[:images]:
        cv2.imwrite(str(folder_images / f"{name}.png"), img[..., ::-1])
    return reg, folder_images
