"""Which ops of a .tflite does XNNPACK take, and into how many delegate partitions?

ai-edge-litert applies the XNNPACK delegate by default. After `allocate_tensors` the interpreter's
node list holds the original ops (indices 0..M-1) followed by one DELEGATE node per partition,
each listing the tensors its partition reads and writes. An op outside every partition is found by
data flow: its outputs are never written by a DELEGATE node, and they are read by a DELEGATE node,
by another op outside, or are graph outputs (an op inside a partition writes either a partition
output or a tensor only its own partition reads).

Every partition boundary costs a round trip through the interpreter (and, for int8, often a
layout change), so a graph split into many partitions runs far slower than one that delegates
whole. Not for: timing (latency.py) or numerical agreement (parity/).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ..errors import ModelFormatError
from ..sources.tflite_graph import read_tflite


def delegation(path: str | Path, threads: int = 1) -> dict:
    """{"partitions", "delegated_nodes", "total_nodes", "undelegated_ops", "undelegated_op_counts"}."""

    try:
        interp = Interpreter(
            model_path=str(path), num_threads=threads, experimental_op_resolver_type=OpResolverType.AUTO
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFormatError(
            f"ai-edge-litert cannot load {Path(path).name}: {exc}", where=str(path), fix="re-export the model"
        ) from exc
    nodes = interp._get_ops_details()  # the only listing of delegate nodes the Python API has
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    original = [n for n in nodes if n["op_name"] != "DELEGATE"]
    graph_outputs = {int(d["index"]) for d in interp.get_output_details()}
    written_by_delegate = {int(t) for d in delegates for t in d["outputs"]}
    read_by_delegate = {int(t) for d in delegates for t in d["inputs"]}
    consumers: dict[int, list[int]] = {}
    for n in original:
        for t in n["inputs"]:
            consumers.setdefault(int(t), []).append(n["index"])
    outside: set[int] = set()
    changed = True
    while changed:  # ops outside feed the plan: delegates, graph outputs, or other ops outside
        changed = False
        for n in original:
            if n["index"] in outside:
                continue
            outs = [int(t) for t in n["outputs"]]
            if any(t in written_by_delegate for t in outs):
                continue
            if any(
                t in graph_outputs or t in read_by_delegate or any(c in outside for c in consumers.get(t, []))
                for t in outs
            ):
                outside.add(n["index"])
                changed = True
    if not delegates:  # nothing delegated at all: every op runs on the built-in kernels
        outside = {n["index"] for n in original}
    names = [t.name for t in read_tflite(path).tensors]
    listed = []
    for n in original:
        if n["index"] in outside:
            listed.append(
                {"index": int(n["index"]), "op": n["op_name"], "outputs": [names[int(t)] for t in n["outputs"]]}
            )
    return {
        "partitions": len(delegates),
        "delegated_nodes": len(original) - len(outside),
        "total_nodes": len(original),
        "undelegated_ops": listed,
        "undelegated_op_counts": dict(Counter(o["op"] for o in listed)),
    }


def summary(info: dict) -> str:
    """One line: 'N partitions, K of M ops delegated; outside: OP x n, ...'."""
    outside = ", ".join(f"{op} x{n}" for op, n in sorted(info["undelegated_op_counts"].items()))
    return (
        f"{info['partitions']} XNNPACK partition(s), {info['delegated_nodes']} of {info['total_nodes']} ops"
        f" delegated" + (f"; outside: {outside}" if outside else "")
    )
