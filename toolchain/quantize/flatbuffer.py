"""TFLite flatbuffer I/O: read a model into TF's object API, write it back, name its ops.

The one place the quantize passes (calibration, ranges, conversions, graph edits, the kernel-gap
probe) turn bytes into a mutable `schema.ModelT` and back. Writing uses TF's own
`flatbuffer_utils.convert_object_to_bytearray`, so a model read and written unchanged keeps the
converter's layout, and every file the ladder writes stays byte-for-byte what it was.

Not for: decoding a graph into arrays for an import or a cost estimate (sources/tflite_graph.py).
"""

from __future__ import annotations

from types import ModuleType

FLOAT32, INT32, UINT8, INT16, INT8 = 0, 2, 3, 7, 9  # TensorType values in the TFLite schema


def schema() -> ModuleType:
    """TF's generated TFLite schema module (ModelT, TensorT, BufferT, BuiltinOperator, ...)."""
    # TensorFlow: importing it takes ~3 s, so `portrait --help` and the commands without a converter skip it
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read(blob: bytes):
    """A mutable `schema.ModelT` of a .tflite flatbuffer."""
    s = schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAs(bytes(blob), 0))


def write(model) -> bytes:
    """The flatbuffer bytes of a `schema.ModelT` (TF's own serializer)."""
    # TensorFlow: see schema()
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_names(model) -> list[str]:
    """Builtin operator name ("CONV_2D", "LOGISTIC", ...) of each op of subgraph 0 ("?" if unknown)."""
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    codes = model.operatorCodes
    return [
        names.get(max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode), "?")
        for op in model.subgraphs[0].operators
    ]


def is_constant(model, t) -> bool:
    """Whether tensor `t` (a TensorT of `model`) holds data in the flatbuffer (weights, biases, shapes)."""
    return (
        t.buffer < len(model.buffers)
        and model.buffers[t.buffer].data is not None
        and len(model.buffers[t.buffer].data) > 0
    )
