"""Make tf2onnx's output the same bytes for the same float .tflite, run after run.

tf2onnx (1.17) is not deterministic: its generated names carry a process-wide counter
(`Relu__686` in one conversion, `Relu__1360` in the next), and some of its optimizer passes iterate
over sets of strings and of node objects, so constants are created in a different order and an
identity Reshape (input shape = target shape, e.g. after a GlobalAveragePool) survives in some runs
and not in others: the selfie's file had 198 nodes in one run, 199 in the next. The graph computes
the same function either way.

`canonicalize` fixes the bytes without changing the function: identity Reshapes (static input shape
equal to the constant target shape) are removed, and every generated name (intermediate tensors,
initializers, nodes) is rewritten from its base name plus its position in the graph, initializers
sorted by their new name. Graph inputs and outputs keep their names (the contract).

Not for: the conversion itself (quantize/__init__.py export_onnx) or the numerical check (check_onnx).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

_GENERATED = re.compile(r"__\d+|:\d+$")  # tf2onnx's counter (anywhere in a name) and output index


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = shape_inference.infer_shapes(model)
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[v.name] = [d.dim_value for d in dims]
    return out


def drop_identity_reshapes(model: onnx.ModelProto) -> int:
    """Remove Reshape nodes whose (static) input shape already equals their constant target shape.
    Returns how many were removed."""
    g = model.graph
    shapes = _static_shapes(model)
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    outputs = {o.name for o in g.output}
    drop, rename = [], {}
    for n in g.node:
        if n.op_type != "Reshape" or len(n.input) < 2 or n.output[0] in outputs:
            continue
        target, src = consts.get(n.input[1]), shapes.get(n.input[0])
        if target is None or src is None or np.any(np.asarray(target) <= 0):
            continue
        if list(np.asarray(target).reshape(-1)) == list(src):
            drop.append(n)
            rename[n.output[0]] = n.input[0]
    for n in drop:
        g.node.remove(n)
    for n in g.node:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return len(drop)


def rename_generated(model: onnx.ModelProto) -> None:
    """Rewrite every name of the graph (except graph inputs and outputs) as its base name (tf2onnx's
    counter suffix removed) plus a suffix from its first appearance in node order."""
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    new: dict[str, str] = {}
    taken: set[str] = set(keep)

    def canon(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in new:
            base = _GENERATED.sub("", name) or "t"
            cand, k = base, 0
            while cand in taken:
                k += 1
                cand = f"{base}__c{k}"
            taken.add(cand)
            new[name] = cand
        return new[name]

    for n in g.node:
        for i, name in enumerate(n.input):
            n.input[i] = canon(name)
        for i, name in enumerate(n.output):
            n.output[i] = canon(name)
    node_names: set[str] = set()
    for idx, n in enumerate(g.node):
        base = _GENERATED.sub("", n.name) or n.op_type
        n.name = base if base not in node_names else f"{base}__n{idx}"
        node_names.add(n.name)
    for init in g.initializer:
        init.name = canon(init.name)
    for v in g.value_info:
        v.name = canon(v.name)
    inits = sorted(g.initializer, key=lambda i: i.name)
    del g.initializer[:]
    g.initializer.extend(inits)
    vis = sorted(g.value_info, key=lambda v: v.name)
    del g.value_info[:]
    g.value_info.extend(vis)


def canonicalize(path: Path) -> dict:
    """Rewrite the .onnx file at `path` in canonical form (see the module docstring); returns a record."""
    model = onnx.load(str(path))
    before = len(model.graph.node)
    dropped = drop_identity_reshapes(model)
    rename_generated(model)
    onnx.checker.check_model(model)
    Path(path).write_bytes(model.SerializeToString(deterministic=True))
    return {"nodes_from_tf2onnx": before, "identity_reshapes_removed": dropped, "nodes": len(model.graph.node)}
