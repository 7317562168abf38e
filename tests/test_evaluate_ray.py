"""The Ray engine against a cluster this test starts (`ray start --head`, loopback, free ports) and
stops: the same per-image numbers as the local engine, bit for bit, and a worker killed mid-run
has its shard retried with every image counted exactly once."""

from __future__ import annotations

import json

import pytest

from toolchain.engines import map_shards
from toolchain.evaluate.accuracy import evaluate
from toolchain.evaluate.datasets import synth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from evaluate_fixtures import RayHead

    head = RayHead(cpus=2)
    import ray

    ray.init(address=head.address, logging_level="ERROR", log_to_driver=False)  # the engine reuses this connection
    yield head.address
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head.stop()


@pytest.fixture(scope="module")
def bundles():
    from evaluate_fixtures import build_bundles

    return build_bundles()


def test_ray_results_identical_to_local_and_a_killed_worker_is_retried(cluster, bundles, tmp_path):
    from evaluate_fixtures import kill_once

    seg = synth(10, tmp_path / "voc", task="segmentation", size=(60, 80)).root
    local = evaluate(bundles["segmentation"], seg, out_dir=tmp_path / "local", resamples=100, shard_size=2)
    marker = tmp_path / "killed"
    remote = evaluate(
        bundles["segmentation"],
        seg,
        engine="ray",
        address=cluster,
        workers=2,
        out_dir=tmp_path / "ray",
        resamples=100,
        shard_size=2,
        shard_fn=kill_once(str(marker), 4),
    )
    assert marker.is_file(), "the fault was not injected"
    e = remote["engine"]
    assert e["engine"] == "ray" and e["workers"] == 2
    # the shard starting at image 4 ran twice; a shard queued on the same worker may have been rerun too
    assert e["attempts"][2] == 2 and 1 <= e["retries"] <= 2 and sum(e["attempts"]) == 5 + e["retries"]
    assert 2 <= len(e["peak_rss_mb"]) <= 3  # the replacement reported; the dead one only if it finished a shard
    # every image exactly once, in order, with the same numbers as the local run (JSON text equal)
    assert [r["index"] for r in remote["per_image"]] == list(range(10))
    assert json.dumps(remote["per_image"]) == json.dumps(local["per_image"])
    assert json.dumps(remote["figures"]) == json.dumps(local["figures"])
    assert all(mb < 1536 for mb in e["peak_rss_mb"].values())


def test_map_shards_counts_each_item_once_and_keeps_order(cluster, tmp_path):
    from evaluate_fixtures import kill_once

    shards = [[i, i + 1] for i in range(0, 16, 2)]
    fn = kill_once(str(tmp_path / "killed"), 6)
    local = map_shards(fn, shards[:3])  # local engine: the fault index is not in these shards
    stats = {}
    out = map_shards(fn, shards, engine="ray", address=cluster, workers=2, stats=stats)
    items = [i for shard in out for i, _, _ in shard]
    assert items == list(range(16))  # each item once, in order
    assert [sq for shard in out for _, sq, _ in shard] == [i * i for i in range(16)]
    assert [x[:2] for s in out[:3] for x in s] == [x[:2] for s in local for x in s]
    assert stats["attempts"][3] == 2 and sum(stats["attempts"]) == len(shards) + stats["retries"]


def test_map_shards_passes_the_shards_own_error_through(cluster):
    def divide(shard):  # nested: Ray ships it by value (a test module is not importable on the workers)
        return [1 / x for x in shard]

    with pytest.raises(ZeroDivisionError):
        map_shards(divide, [[1], [0]], engine="ray", address=cluster, workers=1)
    with pytest.raises(ZeroDivisionError):
        map_shards(divide, [[1], [0]])
