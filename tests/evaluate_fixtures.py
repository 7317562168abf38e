"""Tiny bundles for the evaluation tests (a 33x33 segmenter in float32 + int8, a 33x33 depth net in
float32), made with the TFLite converter and a hand-written manifest: no export pipeline, no
../shared. Also a throwaway Ray head on loopback (`ray start --head`, free ports) and a shard
function that kills its own worker once, for the retry test. Built by code, never committed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from builders import VOC, tiny_segmenter_keras

from toolchain.bundle import record_files

SEG, DEPTH = "tinyseg", "tinydepth"


def _convert(model, path: Path, int8: bool = False) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        shape = (1,) + tuple(model.input.shape[1:])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.integers(0, 256, shape).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type, conv.inference_output_type = tf.uint8, tf.int8
    path.write_bytes(conv.convert())
    return path


def _manifest(mid: str, task: str, files: dict[str, str], outputs: list[dict], **extra) -> dict:
    return {
        "model_id": mid,
        "task": task,
        "input": {"size": [33, 33], "layout": "NHWC"},
        "outputs": outputs,
        "models": {f: {"precision": p} for f, p in files.items()},
        **extra,
    }


_CACHE: dict[str, Path] = {}


def build_bundles() -> dict[str, Path]:
    """{"segmentation": bundle, "depth": bundle} (pixels 0..255 in, normalisation inside), built once
    per test process in a temporary folder; callers copy a bundle before changing it."""
    if _CACHE:
        return dict(_CACHE)
    import keras
    from keras import layers

    root = Path(tempfile.mkdtemp(prefix="evalbundles-"))
    seg = root / SEG
    seg.mkdir(parents=True)
    x = keras.Input((33, 33, 3), batch_size=1)
    net = tiny_segmenter_keras()
    m = keras.Model(x, net(layers.Rescaling(1 / 127.5, offset=-1.0)(x)))
    _convert(m, seg / f"{SEG}_float32.tflite")
    _convert(m, seg / f"{SEG}_int8.tflite", int8=True)
    (seg / "manifest.json").write_text(
        json.dumps(
            _manifest(
                SEG,
                "segmentation",
                {f"{SEG}_float32.tflite": "float32", f"{SEG}_int8.tflite": "int8"},
                [{"name": "logits", "kind": "logits", "shape": [1, 33, 33, 21]}],
                labels=VOC,
                foreground_classes={"person": 15, "cat": 8},
                handoff=f"{SEG}_int8.tflite",
            )
        )
    )
    dep = root / DEPTH
    dep.mkdir(parents=True)
    keras.utils.set_random_seed(1)
    x = keras.Input((33, 33, 3), batch_size=1)
    y = layers.Conv2D(4, 3, padding="same", activation="relu")(layers.Rescaling(1 / 255.0)(x))
    y = layers.Conv2D(1, 3, padding="same", activation="softplus")(y)
    _convert(keras.Model(x, y), dep / f"{DEPTH}_float32.tflite")
    (dep / "manifest.json").write_text(
        json.dumps(
            _manifest(
                DEPTH,
                "depth",
                {f"{DEPTH}_float32.tflite": "float32"},
                [{"name": "depth", "kind": "relative_depth", "shape": [1, 33, 33, 1]}],
            )
        )
    )
    for b in (seg, dep):  # an intact bundle lists every file with its SHA-256 (the bundle loader checks)
        record_files(b, "")
    _CACHE.update({"segmentation": seg, "depth": dep})
    return dict(_CACHE)


# ----------------------------------------------------------------------------------- fault injection

KILL_MARKER_ENV = "PORTRAIT_TEST_KILL_MARKER"


def kill_once(marker: str, index: int):
    """A shard wrapper: the first worker that gets the shard whose first sample has `index` kills
    itself (SIGKILL, as an out-of-memory killer would) and leaves `marker` behind, so the retry runs."""

    def fn(spec):
        from toolchain.evaluate.accuracy import evaluate_shard

        first = spec["samples"][0]["index"] if isinstance(spec, dict) else spec[0]
        if first == index and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate_shard(spec) if isinstance(spec, dict) else [(i, i * i, os.getpid()) for i in spec]

    return fn


# ----------------------------------------------------------------------------------- a Ray head


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_range(n: int, avoid: list[int]) -> int:
    """Start of n consecutive free ports below the ephemeral range, clear of `avoid`."""
    rng = np.random.default_rng(os.getpid())
    for _ in range(50):
        start = int(rng.integers(10000, 30000 - n))
        if not any(start <= a < start + n for a in avoid) and all(_port_free(q) for q in range(start, start + n)):
            return start
    raise RuntimeError("no free port range for Ray workers")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class RayHead:
    """`ray start --head --block` on loopback with free ports, in its own process group; stop()
    ends that group only (never `ray stop`, which would end every Ray on the machine)."""

    def __init__(self, cpus: int = 2):
        ray_bin = str(Path(sys.executable).with_name("ray"))
        self.temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Unix socket paths are limited
        p = _free_ports(9)
        base = _free_range(100, p)
        self.address = f"127.0.0.1:{p[0]}"
        cmd = [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={p[0]}",
            f"--num-cpus={cpus}",
            "--include-dashboard=false",
            f"--temp-dir={self.temp}",
            f"--node-manager-port={p[1]}",
            f"--object-manager-port={p[2]}",
            f"--ray-client-server-port={p[3]}",
            f"--dashboard-agent-listen-port={p[4]}",
            f"--dashboard-agent-grpc-port={p[5]}",
            f"--metrics-export-port={p[6]}",
            f"--runtime-env-agent-port={p[7]}",
            f"--dashboard-port={p[8]}",
            f"--min-worker-port={base}",
            f"--max-worker-port={base + 99}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ]
        self.log = Path(self.temp) / "head.log"
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a throwaway loopback cluster: no token to hand round
        self.proc = subprocess.Popen(
            cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text()[-3000:]
                self.stop()
                raise RuntimeError("ray start --head exited:\n" + text)
            if "Ray runtime started" in self.log.read_text():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("ray start --head did not come up in 120 s:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        import shutil

        try:  # `ray start --block` shuts its processes down on SIGINT; whatever is left is killed below
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=8)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.temp, ignore_errors=True)
