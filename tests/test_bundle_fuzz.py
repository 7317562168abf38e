"""Issue 28: a seeded mutation campaign over the bundle consumers on the tiny exported bundle (the long
one is `python -m experiments.fuzz_bundles --n 1000`, same code). Every mutant carries one real damage; the loader,
`portrait verify`, `portrait check` and `portrait render` must each end in the project's error or a
failed verdict: no uncaught exception, no damaged bundle accepted, none slower than 5 s to its verdict."""

from __future__ import annotations

import numpy as np
from sim_fixtures import tiny_bundle

from experiments import fuzz_bundles as bundle_fuzz


def test_seeded_campaign_over_the_consumers(tmp_path):
    tally = bundle_fuzz.campaign(tiny_bundle(), tmp_path, n=150, seed=1)
    print("\n" + tally.report())
    assert tally.mutants == 150
    assert tally.count("uncaught") == 0, "\n".join(tally.uncaught)
    assert tally.accepted == [], "\n".join(tally.accepted)
    assert tally.over_limit == 0, tally.report()
    assert tally.outcomes["verify"].get("fail", 0) + tally.outcomes["verify"].get("error", 0) == 150
    assert tally.outcomes["loader"] == {"error": 150} and tally.neutral == 0
    assert set(tally.by_mutation) == {name for name, *_ in bundle_fuzz.MUTATIONS}  # every kind was drawn


def test_mutations_are_seeded_and_each_is_a_damage(tmp_path):
    src = tiny_bundle()
    a = bundle_fuzz.mutate(src, tmp_path / "a", np.random.default_rng(7))
    b = bundle_fuzz.mutate(src, tmp_path / "b", np.random.default_rng(7))
    assert a == b and not a[2]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


def test_json_byte_targets_stay_outside_strings():
    text = b'{"a": "x\\"{,}", "b": [1, 2]}'
    kinds = bundle_fuzz._structure(text)
    assert [text[i : i + 1] for i, _ in kinds] == [
        b"{",
        b'"',
        b'"',
        b":",
        b'"',
        b'"',
        b",",
        b'"',
        b'"',
        b":",
        b"[",
        b",",
        b"]",
        b"}",
    ]
    for i in bundle_fuzz._token_gaps(text):  # a letter between tokens never parses
        import json

        try:
            json.loads(text[:i] + b"x" + text[i:])
            raise AssertionError(f"inserting at {i} still parses")
        except ValueError:
            pass
