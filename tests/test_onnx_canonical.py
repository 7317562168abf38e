"""quantize/onnx_canonical.py: tf2onnx's run-to-run differences (counter-numbered names, constants in another
order, an identity Reshape kept or not) canonicalize to the same bytes, with the same outputs."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolchain.quantize.onnx_canonical import canonicalize


def _model(counter: int, identity_reshape: bool, const_order: int) -> onnx.ModelProto:
    """x -> Relu -> [Reshape to its own shape] -> Add(c) -> y, names numbered like tf2onnx's."""

    def n(base: str) -> str:
        return f"{base}__{counter}"

    shape = numpy_helper.from_array(np.array([1, 4], np.int64), n("new_shape"))
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), n("const_fold_opt"))
    nodes = [helper.make_node("Relu", ["x"], [n("Relu") + ":0"], name=n("Relu"))]
    src = n("Relu") + ":0"
    if identity_reshape:
        nodes.append(helper.make_node("Reshape", [src, shape.name], [n("Reshape") + ":0"], name=n("Reshape")))
        src = n("Reshape") + ":0"
    nodes.append(helper.make_node("Add", [src, c.name], ["y"], name="Add"))
    inits = [shape, c] if const_order == 0 else [c, shape]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tf2onnx")


def test_two_numberings_canonicalize_to_the_same_bytes(tmp_path):
    import onnxruntime as ort

    paths = []
    for i, (counter, reshape, order) in enumerate([(683, True, 0), (1360, False, 1), (12, True, 1)]):
        p = tmp_path / f"m{i}.onnx"
        onnx.save(_model(counter, reshape, order), str(p))
        x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
        before = ort.InferenceSession(str(p)).run(None, {"x": x})[0]
        rec = canonicalize(p)
        assert rec["identity_reshapes_removed"] == int(reshape) and rec["nodes"] == 2
        assert np.array_equal(ort.InferenceSession(str(p)).run(None, {"x": x})[0], before)
        paths.append(p)
    blobs = {p.read_bytes() for p in paths}
    assert len(blobs) == 1
    m = onnx.load(str(paths[0]))
    assert [i.name for i in m.graph.input] == ["x"] and [o.name for o in m.graph.output] == ["y"]
    assert not any("__" in t for node in m.graph.node for t in list(node.input) + list(node.output))
