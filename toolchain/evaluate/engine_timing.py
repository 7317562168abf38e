"""The evaluation part of `make bench`: the same evaluation on the local engine and on Ray workers.

N synthetic images (made once with `portrait dataset synth`, kept in export/bench/), the bundle's
float32 and int8 files, one TFLite thread per model: first in this process, then sharded on a Ray
instance started here with `workers` workers (its start-up counted). It reports the wall-clock
speed-up, each Ray worker's peak memory, whether the per-image numbers are identical, and the
machine's load before and after (other work on the machine skews the ratio). Not a test.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import paths
from ..latency import host_isa
from .accuracy import evaluate, resolve_bundle
from .datasets import synth

DEFAULT_MODEL = "deeplabv3_mnv2_pascal_257"
TARGET_SPEEDUP = 1.7
TARGET_WORKER_MB = 1536


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _isa() -> str:
    return host_isa()["summary"]


def ensure_dataset(
    folder: Path,
    n: int,
    *,
    size=(240, 320),
    seed: int = 0,
    engine: str = "local",
    workers: int | None = None,
    progress=True,
) -> Path:
    """The synthetic VOC set in `folder`, made only if it is not already there with these settings."""
    meta = folder / "dataset.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if (m.get("task"), m.get("n"), m.get("seed"), m.get("size")) == ("segmentation", n, seed, list(size)):
            return folder
    synth(n, folder, task="segmentation", seed=seed, size=size, engine=engine, workers=workers, progress=progress)
    return folder


def run_eval_bench(
    bundle: Path | None = None,
    *,
    n: int = 2000,
    workers: int = 2,
    dataset: Path | None = None,
    out_dir: Path | None = None,
    precisions=("int8",),
    shard_size: int = 20,
    progress=True,
) -> dict:
    bundle = resolve_bundle(bundle or DEFAULT_MODEL).root
    out_dir = Path(out_dir or paths.REPO_ROOT / "export" / "bench")
    dataset = Path(dataset or out_dir / f"synth_voc_{n}")
    t = time.perf_counter()
    ensure_dataset(dataset, n, engine="ray", workers=workers, progress=progress)
    synth_s = time.perf_counter() - t
    res: dict[str, Any] = {
        "n": n,
        "workers": workers,
        "bundle": str(bundle),
        "dataset": str(dataset),
        "precisions": ["float32", *precisions],
        "cpus": os.cpu_count(),
        "isa": _isa(),
        "load_before": _load(),
        "dataset_s": round(synth_s, 1),
    }
    runs = {}
    for name, kw in (("local", {"engine": "local"}), ("ray", {"engine": "ray", "workers": workers})):
        t = time.perf_counter()
        r = evaluate(
            bundle,
            dataset,
            precisions=list(precisions),
            shard_size=shard_size,
            threads=1,
            out_dir=out_dir / f"eval_{name}",
            progress=progress,
            **kw,
        )
        runs[name] = {
            "wall_s": round(time.perf_counter() - t, 2),
            "engine_wall_s": r["engine"]["wall_s"],
            "ray_init_s": r["engine"].get("ray_init_s"),
            "cpu_s": r["engine"].get("cpu_s"),
            "peak_rss_mb": r["engine"]["peak_rss_mb"],
            "retries": r["engine"].get("retries", 0),
            "load_after": _load(),
            "figures": {
                f: {k: v for k, v in figs.items() if k in ("miou", "boundary_f", "drop_vs_float32")}
                for f, figs in r["figures"].items()
            },
            "_per_image": r["per_image"],
        }
    res["identical_per_image"] = json.dumps(runs["local"].pop("_per_image")) == json.dumps(
        runs["ray"].pop("_per_image")
    )
    res["runs"] = runs
    res["speedup"] = round(runs["local"]["wall_s"] / runs["ray"]["wall_s"], 3)
    res["max_worker_mb"] = max(runs["ray"]["peak_rss_mb"].values())
    res["load_after"] = _load()
    res["met"] = {
        "speedup": res["speedup"] >= TARGET_SPEEDUP,
        "worker_memory": res["max_worker_mb"] <= TARGET_WORKER_MB,
    }
    return res


def format_eval_bench(res: dict) -> str:
    lo, ra = res["runs"]["local"], res["runs"]["ray"]
    return "\n".join(
        [
            f"{res['n']} synthetic images, {', '.join(res['precisions'])} of {Path(res['bundle']).name}, "
            f"1 TFLite thread per model, {res['cpus']} CPUs ({res['isa']})",
            f"  local engine (one process):  {lo['wall_s']:.1f} s  ({res['n'] / lo['wall_s']:.1f} images/s), "
            f"peak memory {max(lo['peak_rss_mb'].values()):.0f} MB",
            f"  ray engine ({res['workers']} workers, start-up included): {ra['wall_s']:.1f} s "
            f"({res['n'] / ra['wall_s']:.1f} images/s), peak memory per worker "
            f"{', '.join(f'{v:.0f}' for v in sorted(ra['peak_rss_mb'].values()))} MB, shard retries {ra['retries']}, "
            f"of which starting Ray {ra['ray_init_s']} s",
            f"  CPU obtained: local {lo['cpu_s'] / lo['engine_wall_s']:.2f} cores ({lo['cpu_s']:.0f} CPU s), Ray workers "
            f"{ra['cpu_s'] / ra['engine_wall_s']:.2f} cores ({ra['cpu_s']:.0f} CPU s, start-up included); "
            f"CPU time per image Ray / local x{ra['cpu_s'] / lo['cpu_s']:.2f}",
            f"  speed-up x{res['speedup']:.2f} (target >= {TARGET_SPEEDUP}: {'met' if res['met']['speedup'] else 'NOT met'}); "
            f"worker memory <= {TARGET_WORKER_MB} MB: {'met' if res['met']['worker_memory'] else 'NOT met'}; "
            f"per-image numbers identical: {res['identical_per_image']}",
            f"  load average (1, 5, 15 min) before {res['load_before']}, after local {lo['load_after']}, "
            f"after ray {ra['load_after']} (other processes on the machine skew the ratio)",
        ]
    )
