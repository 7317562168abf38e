"""The output-grid bound (toolchain/parity/bound.py) and bound-relative budgets in the gate."""

import numpy as np
import pytest
from parity_fixtures import build_tiny_pair, damage_scale

from toolchain.errors import RecipeError
from toolchain.parity import bound, gate
from toolchain.recipes import merge_defaults


def test_grid_rounds_like_a_quantizing_kernel():
    g = bound.OutputGrid(scale=0.5, zero_point=-128, qmin=-128, qmax=127, bits=8)
    assert (g.lo, g.hi) == (0.0, 127.5)
    x = np.array([-3.0, 0.2, 0.26, 1.0, 200.0])
    assert g.round(x).tolist() == [0.0, 0.0, 0.5, 1.0, 127.5]


def test_bound_of_two_class_logits_is_exact():
    """Two classes whose logits differ by less than half a step where x < 0: on the grid they tie and
    argmax takes class 0, so exactly those pixels are lost; the bound says so to the pixel."""
    a = np.linspace(-1, 1, 100)  # 50 pixels < 0, 50 > 0
    logits = np.stack([np.zeros_like(a), 0.1 * (a < 0) + 2.0 * (a >= 0)], -1)[None]  # class 1 wins everywhere
    g = bound.OutputGrid(scale=1.0, zero_point=0, qmin=-128, qmax=127, bits=8)
    rounded = bound.rounded_outputs([logits], g)[0]
    assert rounded[0, :50, 1].tolist() == [0.0] * 50  # 0.1 rounds to 0: a tie with class 0
    from types import SimpleNamespace

    entry = SimpleNamespace(task="segmentation", foreground_classes={"person": 1})
    recipe = merge_defaults({"parity": {"classes": ["person"], "min_class_fraction": 0.01}})
    best = gate.task_figures(entry, recipe, [logits[0][None]], [rounded[0][None]], ["x"])
    assert best["pixel_agreement"] == pytest.approx(0.5)
    assert best["worst_class_iou"] == pytest.approx(0.5)


def test_relative_judging_both_directions():
    margins = {"pixel_agreement": 0.003, "abs_rel": 0.01}
    best = {"pixel_agreement": 0.99, "abs_rel": 0.05}
    assert bound.judge_relative({"pixel_agreement": 0.9871, "abs_rel": 0.0599}, best, margins) == []
    fails = bound.judge_relative({"pixel_agreement": 0.9869, "abs_rel": 0.0601}, best, margins)
    assert len(fails) == 2 and "bound 0.9900 - 0.003" in fails[0] and "bound 0.0500 + 0.01" in fails[1]
    assert bound.gap_to_bound({"pixel_agreement": 0.98}, best, {"pixel_agreement": 0.0}) == {
        "pixel_agreement": pytest.approx(0.01)
    }


def test_bad_margins_are_recipe_errors():
    with pytest.raises(RecipeError, match="unknown figure"):
        bound.check_margins({"pixel_agreemnt": 0.003})
    with pytest.raises(RecipeError, match=">= 0"):
        bound.check_margins({"pixel_agreement": -1})
    with pytest.raises(RecipeError, match="unknown image set"):
        gate.further_sets(merge_defaults({"parity": {"sets": {"holiday_photos": {}}}}))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return build_tiny_pair(tmp_path_factory.mktemp("bound"))


def test_gate_bound_is_float_rounded_onto_the_files_grid(pair):
    """The gate's bound on the tiny int8 file: the float file's own logits rounded onto that file's output
    grid, judged like any output; a float file has no grid, so its bound is float itself."""
    recipe = merge_defaults({"parity": {"classes": [], "relative_to_bound": {"pixel_agreement": 1.0}}})
    figs = gate.compare_pair(pair.entry, recipe, pair.float_path, pair.int8_path, pair.images)
    grid = bound.output_grid(pair.int8_path)
    assert grid is not None and grid.bits == 8 and figs["bound"]["grid"] == grid.describe()
    from toolchain.runtime import TfliteRunner

    refs = [gate._first(TfliteRunner(pair.float_path).run(img)) for _, img in pair.images]
    manual = gate.task_figures(pair.entry, recipe, refs, [grid.round(r) for r in refs], [n for n, _ in pair.images])
    assert figs["bound"]["figures"]["pixel_agreement"] == manual["pixel_agreement"]
    assert figs["passed"]  # a margin of 1.0 passes anything
    same = gate.compare_pair(pair.entry, recipe, pair.float_path, pair.float_path, pair.images)
    assert bound.output_grid(pair.float_path) is None
    assert same["bound"]["figures"]["pixel_agreement"] == 1.0 and same["passed"]


def test_a_file_far_under_its_bound_fails_on_both_kernel_sets(pair, tmp_path):
    """A damaged file (one activation's step 64x coarser) stays under the bound of its (unchanged) output
    grid by more than a tight margin: the gate names the set, the kernel set and the bound."""
    from toolchain.sources.tflite_graph import read_tflite

    g = read_tflite(pair.int8_path)
    name = g.tensor(g.ops[len(g.ops) // 2].outputs[0]).name
    bad = damage_scale(pair.int8_path, tmp_path / "bad.tflite", name, factor=64.0)
    recipe = merge_defaults({"parity": {"classes": [], "relative_to_bound": {"pixel_agreement": 0.001}}})
    figs = gate.compare_pair(pair.entry, recipe, pair.float_path, bad, pair.images)
    assert not figs["passed"]
    assert any(f.startswith("xnnpack: pixel_agreement") and "< bound" in f for f in figs["failures"])
    assert any(f.startswith("reference: pixel_agreement") and "< bound" in f for f in figs["failures"])
    assert figs["bound"]["gap"]["reference"]["pixel_agreement"] > 0.001


def test_a_further_image_set_is_judged_beside_the_main_one(pair):
    """[parity.sets.<name>]: its own images, its own budgets, failures prefixed with the set's name; the main
    set's verdict is unchanged by it."""
    recipe = merge_defaults(
        {
            "parity": {
                "classes": [],
                "pixel_agreement_min": 0.0,
                "sets": {"depth_photos": {"pixel_agreement_min": 1.01, "relative_to_bound": {"pixel_agreement": 1.0}}},
            }
        }
    )
    figs = gate.compare_pair(
        pair.entry, recipe, pair.float_path, pair.int8_path, pair.images, extra_sets={"depth_photos": pair.images[:2]}
    )
    block = figs["sets"]["depth_photos"]
    assert block["images"] == [n for n, _ in pair.images[:2]]
    assert "bound" in block and set(block["per_kernels"]) == {"xnnpack", "reference"}
    assert figs["failures"] and all(f.startswith("depth_photos ") for f in figs["failures"])
    assert not figs["passed"]
    skipped = gate.judge_set(
        pair.entry, recipe, "depth_photos", {}, pair.float_path, pair.int8_path, [], ("xnnpack",), ("xnnpack",)
    )
    assert "skipped" in skipped and skipped["failures"] == []


def test_a_set_with_gate_false_is_reported_not_gating(pair):
    recipe = merge_defaults(
        {
            "parity": {
                "classes": [],
                "pixel_agreement_min": 0.0,
                "sets": {"depth_photos": {"pixel_agreement_min": 1.01, "gate": False}},
            }
        }
    )
    figs = gate.compare_pair(
        pair.entry, recipe, pair.float_path, pair.int8_path, pair.images, extra_sets={"depth_photos": pair.images[:1]}
    )
    assert figs["passed"] and not figs["failures"]
    assert figs["reported_failures"] and figs["reported_failures"][0].startswith("depth_photos ")
    assert figs["sets"]["depth_photos"]["gates"] is False
    from toolchain.parity.report import summarize_parity

    assert "NOT MET (reported, not gating)" in summarize_parity({**figs, "kernels": "both"})
    with pytest.raises(RecipeError, match="gate must be"):
        gate.further_sets(merge_defaults({"parity": {"sets": {"depth_photos": {"gate": "no"}}}}))


def test_card_shows_the_bound_next_to_the_figure():
    from toolchain.handoff.card import bound_lines

    p = {
        "per_kernels": {},
        "sets": {
            "depth_photos": {
                "images": ["a.jpg", "b.jpg"],
                "budgets": {},
                "gates": False,
                "failures": ["reference: pixel_agreement_worst = 0.9488 < bound 0.9856 - 0.003"],
                "per_kernels": {
                    "xnnpack": {"pixel_agreement_worst": 0.9811},
                    "reference": {"pixel_agreement_worst": 0.9488},
                },
                "bound": {
                    "grid": "8-bit output grid [-4.885, 31.75], step 0.1437",
                    "figures": {"pixel_agreement_worst": 0.9856},
                    "relative_to_bound": {"pixel_agreement_worst": 0.003},
                },
            }
        },
    }
    text = "\n".join(bound_lines(p))
    assert "depth_photos (2 images): NOT MET (reported, not gating)" in text
    assert (
        "pixel_agreement_worst: bound 0.9856, budget within 0.003 of it; this file: xnnpack 0.9811, reference 0.9488"
        in text
    )
