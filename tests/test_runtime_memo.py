"""Reference-kernel runs remembered in-process (toolchain/runtime.py recall/remember): the export's
verify takes the golden-vector runs it just made only for the same file bytes, kernels and input."""

import numpy as np
from builders import keras_to_tflite, tiny_segmenter_keras

from toolchain import runtime
from toolchain.handoff import verify


def test_a_reference_run_is_reused_only_for_the_same_file_and_input(tmp_path, monkeypatch):
    path = tmp_path / "tiny.tflite"
    keras_to_tflite(tiny_segmenter_keras(), path)
    runtime._RUNS.clear()
    runner = runtime.TfliteRunner(path, kernels="reference")
    x = np.random.default_rng(0).integers(0, 256, tuple(runner.input["shape"])).astype(np.float32)
    outs = runner.run(x, dequantize=False)
    assert len(runtime._RUNS) == 1
    interp = verify._interpreter(path, "reference")
    invoked = []
    real = interp.invoke
    monkeypatch.setattr(interp, "invoke", lambda: invoked.append(1) or real())
    record = {"input": {"norm_mean": [0.0], "norm_std": [1.0], "dtype": "float32"}}
    got = verify._feed(interp, record, [("a", x)], path, "reference")
    assert not invoked  # remembered
    by_index = {d["index"]: v for d, v in zip(runner.output_details().values(), outs.values())}
    assert [np.array_equal(g, by_index[od["index"]]) for g, od in zip(got[0], interp.get_output_details())] == [True]
    verify._feed(interp, record, [("b", x + 1)], path, "reference")
    assert len(invoked) == 1  # another input runs
    verify._feed(interp, record, [("a", x)], path, "xnnpack")
    assert len(invoked) == 2  # other kernels are never remembered
    other = tmp_path / "other.tflite"
    other.write_bytes(path.read_bytes() + b"\0")  # other bytes: another file
    assert runtime.recall(runtime.run_key(other, "reference", x)) is None
    assert runtime.recall(runtime.run_key(path, "reference", x)) is not None
