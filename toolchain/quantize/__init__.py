"""Quantization: a float model (sources/) to TFLite files, one module per concern.

- precisions.py   the standard precisions through TF's converter (float32, float16, dynamic, int8),
                  selective int8, the all-int8 check and ONNX export;
- conversions.py  what the precision ladder needs beyond them: 16x8, the uint8 input contract, output
                  transforms inside the graph;
- ladder.py       the precision ladder: rungs tried in order until one meets the parity budget;
- calibration.py  one true-range calibration pass per float graph, shared by every conversion;
- ranges.py, ptq.py, adaround.py, equalize.py, split.py, graphedit.py   post-training techniques;
- flatbuffer.py   read / write / op names: the flatbuffer I/O every pass uses;
- kernel_gap.py, xnnpack.py   what the reference and XNNPACK kernels do differently.

This face re-exports the standard conversions; modules inside the package import each other directly.
"""

from .precisions import (
    PRECISIONS,
    calibrate_int8,
    check_all_int8,
    check_onnx,
    convert,
    convert_selective,
    export_onnx,
    float_ops,
    is_output_edge,
    quantize_calibrated,
    tensor_types,
)

__all__ = [
    "PRECISIONS",
    "calibrate_int8",
    "check_all_int8",
    "check_onnx",
    "convert",
    "convert_selective",
    "export_onnx",
    "float_ops",
    "is_output_edge",
    "quantize_calibrated",
    "tensor_types",
]
