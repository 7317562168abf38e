"""Edit the weights of a float .tflite and gather the activation statistics the techniques need.

The post-training techniques (equalize.py, adaround.py) work on the float32 .tflite the export
writes: they change weights and biases and write an equivalent float32 file, which the importer
then re-emits (ptq.py). Here: the convolutions of a file with their weight/bias/activation, a
writable copy of the flatbuffer, and per-layer statistics over calibration images (input patch
mean and Gram matrix at sampled output positions; per-channel output maxima).

Weight layouts are TFLite's: CONV_2D O,H,W,I; DEPTHWISE_CONV_2D 1,H,W,C (channel multiplier 1).
Per-channel int8 weight grid (what the converter uses): scale_o = max|w_o| / 127, symmetric,
narrow range [-127, 127].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from . import flatbuffer
from .flatbuffer import op_names

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}


@dataclass
class Conv:
    op_index: int
    kind: str  # "conv" or "depthwise"
    x: int  # input activation tensor
    y: int  # output tensor
    w: int  # weight tensor
    b: int | None  # bias tensor
    activation: str
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: str  # "SAME" / "VALID"
    kernel: tuple[int, int]


class Editable:
    """A float .tflite whose constant tensors can be read and replaced, then written out."""

    def __init__(self, path_or_bytes):
        raw = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
        self.model = flatbuffer.read(raw)
        self.sg = self.model.subgraphs[0]
        self.op_names = op_names(self.model)
        self._unshare_constants()

    def _unshare_constants(self) -> None:
        """Give each convolution its own weight and bias tensors: the converter may let two
        convolutions share one constant (the selfie's transposed-conv phases share a bias), and a
        technique that edits one layer must not edit the other behind its back."""
        users: dict[int, int] = {}
        for i in range(len(self.op_names)):
            for t in list(self.sg.operators[i].inputs):
                users[t] = users.get(t, 0) + 1
        for i, name in enumerate(self.op_names):
            if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                continue
            op = self.sg.operators[i]
            ins = list(op.inputs)
            for pos in (1, 2):
                if pos < len(ins) and ins[pos] >= 0 and users.get(ins[pos], 0) > 1:
                    clone = copy.deepcopy(self.sg.tensors[ins[pos]])
                    self.sg.tensors.append(clone)
                    users[ins[pos]] -= 1
                    ins[pos] = len(self.sg.tensors) - 1
                    op.inputs = np.asarray(ins, dtype=np.int32)

    def get(self, t: int) -> np.ndarray:
        ten = self.sg.tensors[t]
        data = self.model.buffers[ten.buffer].data
        return np.frombuffer(bytes(data), np.float32).reshape(tuple(ten.shape)).copy()

    def set(self, t: int, value: np.ndarray) -> None:
        """Replace a float32 constant (a new buffer, so a shared buffer is never changed behind
        another tensor's back)."""
        schema = flatbuffer.schema()
        ten = self.sg.tensors[t]
        value = np.ascontiguousarray(value, np.float32)
        assert tuple(value.shape) == tuple(ten.shape), (value.shape, ten.shape)
        buf = schema.BufferT()
        buf.data = np.frombuffer(value.tobytes(), np.uint8)
        self.model.buffers.append(buf)
        ten.buffer = len(self.model.buffers) - 1

    def consumers(self, t: int) -> list[int]:
        return [i for i, op in enumerate(self.sg.operators) if t in list(op.inputs)]

    def is_graph_output(self, t: int) -> bool:
        return t in list(self.sg.outputs)

    def convs(self) -> list[Conv]:
        out = []
        for i, (op, name) in enumerate(zip(self.sg.operators, self.op_names)):
            if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                continue
            ins = list(op.inputs)
            w = self.sg.tensors[ins[1]]
            if w.type != 0 or self.model.buffers[w.buffer].data is None:  # float constant weights only
                continue
            o = op.builtinOptions
            if name == "DEPTHWISE_CONV_2D" and getattr(o, "depthMultiplier", 1) not in (0, 1):
                if int(w.shape[3]) != int(self.sg.tensors[ins[0]].shape[3]):
                    continue  # channel multiplier > 1: not handled
            b = ins[2] if len(ins) > 2 and ins[2] >= 0 else None
            out.append(
                Conv(
                    i,
                    "conv" if name == "CONV_2D" else "depthwise",
                    ins[0],
                    list(op.outputs)[0],
                    ins[1],
                    b,
                    ACTIVATIONS.get(o.fusedActivationFunction, "OTHER"),
                    (o.strideH, o.strideW),
                    (o.dilationHFactor, o.dilationWFactor),
                    {0: "SAME", 1: "VALID"}[o.padding],
                    (int(w.shape[1]), int(w.shape[2])),
                )
            )
        return out

    def bytes(self) -> bytes:
        return flatbuffer.write(self.model)

    def write(self, path: Path) -> Path:
        Path(path).write_bytes(self.bytes())
        return Path(path)


def weight_matrix(w: np.ndarray, kind: str) -> np.ndarray:
    """Weights as rows per output channel: conv O x (H*W*I); depthwise C x (H*W)."""
    if kind == "conv":
        return w.reshape(w.shape[0], -1)
    return np.transpose(w[0], (2, 0, 1)).reshape(w.shape[3], -1)


def from_matrix(m: np.ndarray, kind: str, shape) -> np.ndarray:
    if kind == "conv":
        return m.reshape(shape)
    _, kh, kw, c = shape
    return np.transpose(m.reshape(c, kh, kw), (1, 2, 0))[None]


def channel_scales(m: np.ndarray) -> np.ndarray:
    """Per-row int8 scale the converter uses: max|w| / 127 (1 for an all-zero row)."""
    mx = np.max(np.abs(m), axis=1)
    return np.where(mx > 0, mx / 127.0, 1.0).astype(np.float32)


def round_nearest(m: np.ndarray) -> np.ndarray:
    """Rows rounded to nearest on their per-channel int8 grid (float values)."""
    s = channel_scales(m)[:, None]
    return (np.clip(np.round(m / s), -127, 127) * s).astype(np.float32)


def _same_pad(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    eff = (k - 1) * dil + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def sample_patches(x: np.ndarray, conv: Conv, n: int, rng: np.random.Generator) -> np.ndarray:
    """Input windows at `n` random output positions of one image x (H, W, C): conv -> [n, kh*kw*C]
    in O,H,W,I order; depthwise -> [n, kh*kw, C]."""
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel, conv.stride, conv.dilation
    h, w, _ = x.shape
    if conv.padding == "SAME":
        (pt, pb), (pl, pr) = _same_pad(h, kh, sh, dh), _same_pad(w, kw, sw, dw)
    else:
        pt = pb = pl = pr = 0
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    oh = (xp.shape[0] - ((kh - 1) * dh + 1)) // sh + 1
    ow = (xp.shape[1] - ((kw - 1) * dw + 1)) // sw + 1
    if oh * ow <= n:
        oy, ox = np.divmod(np.arange(oh * ow), ow)
    else:
        oy, ox = rng.integers(0, oh, n), rng.integers(0, ow, n)
    rows = (oy * sh)[:, None] + (np.arange(kh) * dh)[None, :]  # n, kh
    cols = (ox * sw)[:, None] + (np.arange(kw) * dw)[None, :]  # n, kw
    p = xp[rows[:, :, None], cols[:, None, :], :]  # n, kh, kw, C
    return p.reshape(len(oy), -1) if conv.kind == "conv" else p.reshape(len(oy), kh * kw, -1)


class LayerStats:
    """Per conv: mean input patch, input Gram matrix (conv: K x K; depthwise: C x k x k), and the
    per-channel maximum of the op's output, over calibration images."""

    def __init__(
        self,
        path_or_bytes,
        convs: list[Conv],
        images: np.ndarray,
        *,
        positions: int = 1024,
        seed: int = 0,
        gram: bool = True,
    ):
        content = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else path_or_bytes
        interp = Interpreter(
            model_content=content,
            num_threads=2,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        rng = np.random.default_rng(seed)
        self.mean: dict[int, np.ndarray] = {}
        self.gram: dict[int, np.ndarray] = {}
        self.out_max: dict[int, np.ndarray] = {}
        self.count: dict[int, int] = {}
        for img in images:
            interp.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
            interp.invoke()
            for c in convs:
                x = interp.get_tensor(c.x)[0].astype(np.float32)
                p = sample_patches(x, c, positions, rng)
                y = interp.get_tensor(c.y)[0]
                m = y.reshape(-1, y.shape[-1]).max(axis=0)
                self.out_max[c.op_index] = np.maximum(self.out_max.get(c.op_index, m), m)
                self.mean[c.op_index] = self.mean.get(c.op_index, 0) + p.sum(axis=0)
                if gram:
                    g = p.T @ p if c.kind == "conv" else np.einsum("nkc,nlc->ckl", p, p)
                    self.gram[c.op_index] = self.gram.get(c.op_index, 0) + g
                self.count[c.op_index] = self.count.get(c.op_index, 0) + len(p)
        for k, n in self.count.items():
            self.mean[k] = self.mean[k] / n
            if gram:
                self.gram[k] = self.gram[k] / n
