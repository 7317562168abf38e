"""Run a sequential candidate search in parallel waves without changing what it chooses.

A ladder search (mixed float layers, and any later one such as per-layer int16) is written as a
plain sequential `plan(trial)`: it calls `trial(key, payload)` for one candidate at a time, gets a
result dict with a boolean "passed", and decides the next candidate from it. `run_plan` runs that
plan on an engine (engines.pool: this process or Ray workers) in waves of up to `width` candidates:

- the plan is replayed from the start with the results known so far; the first candidate it asks
  for that has no result yet is the one the sequential search would run next (certain);
- the rest of the wave is speculation: the plan is replayed again with guessed outcomes for the
  unknown candidates, best-first by the guesses' probability (an outcome is guessed to repeat the
  previous one with probability 0.7), and the candidates those hypothetical histories ask for fill
  the wave;
- the wave runs on the pool's workers (one candidate each), every result is stored, and the plan
  is replayed again. `run_candidates` runs one wave of independent candidates on its own.

Only the plan decides, and it sees only real results, in its own order, so the candidates it uses,
the one it chooses and every figure are exactly those of the sequential run, whatever the engine,
the number of workers or the wave width: speculation can waste candidates (counted as "unused"),
never change the outcome. A candidate that raises in a worker comes back as {"error": ...}; it is
an error only if the plan actually uses it.

Needs of `plan`: deterministic, no side effects outside `trial` (it is replayed many times), and
results read only through `trial`'s return value. Keys must be hashable and identify the candidate.

A new search (e.g. int16 activations on the fewest layers) needs three pieces, as mixed.search has:

    def plan(ask):                      # the sequential search; ask(key, payload) -> result dict
        ...  return whatever the search decided
    def make_shard(key, payload):       # -> small picklable description (paths, layer list, out path)
    def judge_one(shard):               # module-level: build + judge one candidate -> {"passed": ...}
    decision, engine_record = run_plan(plan, make_shard, judge_one, engine=..., address=..., workers=...)

Not for: what a candidate computes (mixed.py: quantize + judge) or where it runs (engines.py).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from .. import engines
from ..engines import map_shards
from ..errors import PortraitError

REPEAT = 0.7  # guessed probability that an outcome repeats the previous one
MAX_REPLAYS = 64  # hypothetical histories explored per wave at most


class _Need(Exception):
    def __init__(self, key, payload, last):
        self.key, self.payload, self.last = key, payload, last


class PlanError(PortraitError):
    """A candidate the plan used failed in its worker (the worker's error text is in the message)."""


def run_candidates(
    fn: Callable,
    shards: list,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    stats: dict | None = None,
) -> list:
    """[fn(shard) for shard in shards] on the engine, in order: one wave of independent candidates.
    `fn` a module-level function, each shard a small picklable description (file paths, a layer
    list, where to write); see engines.map_shards. For several waves on the same workers use
    `run_plan` (it keeps one engines.pool open)."""
    return map_shards(fn, shards, engine=engine, address=address, workers=workers, stats=stats)


def _replay(plan, known: dict, guessed: dict):
    """Run the plan with known results, then guessed outcomes. Returns ("done", value) or raises _Need."""
    last = [None]

    def trial(key, payload):
        if key in known:
            res = known[key]
        elif key in guessed:
            res = {"passed": guessed[key], "guessed": True}
        else:
            raise _Need(key, payload, last[0])
        if "error" in res and not res.get("guessed"):
            exc = res.get("exception")
            if isinstance(exc, BaseException):
                raise exc
            raise PlanError(
                f"a candidate of the search failed on its worker: {res['error']}",
                where=str(key)[:200],
                fix="on a multi-node cluster, put TMPDIR on a filesystem every node shares; "
                "otherwise run with --engine local to see the error in this process",
            )
        last[0] = bool(res.get("passed"))
        return res

    return plan(trial)


def run_plan(
    plan: Callable,
    make_shard: Callable,
    fn: Callable,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    width: int | None = None,
    progress=None,
    pool=None,
) -> tuple[Any, dict]:
    """Run `plan(trial)` (see the module doc) with its candidates evaluated in waves on the engine.

    make_shard(key, payload) -> the shard `fn` receives (a small picklable description, e.g. the
    layer list and a file path to write); fn(shard) -> result dict with "passed" (module-level,
    it runs on the workers). width: candidates per wave (default: the engine's workers, so 1 and
    no speculation on the local engine). pool: an open engines.pool to use instead of opening one.
    Returns (what plan returned, engine record: engine, workers, width, waves, candidates run,
    unused speculative ones, wall seconds)."""
    say = progress or (lambda m: None)
    t0 = time.perf_counter()
    known: dict = {}
    cpu_local = 0.0
    cpu_by_pid: dict[int, float] = {}
    record: dict[str, Any] = {
        "engine": engine,
        "workers": None,
        "width": None,
        "waves": 0,
        "candidates_run": 0,
        "candidates_unused": 0,
        "retries": 0,
    }
    own = pool is None
    p = engines.pool(engine=engine, address=address, workers=workers) if own else pool
    if own:
        p.__enter__()
    record["start_s"] = round(time.perf_counter() - t0, 2)
    try:
        k = max(1, int(width or p.workers))
        record.update({"workers": p.workers, "width": k, "engine": p.engine})
        while True:
            wave: dict = {}
            tie = itertools.count()
            frontier: list[tuple[float, int, dict]] = [(-1.0, next(tie), {})]
            replays, outcome = 0, None
            while frontier and len(wave) < k and replays < MAX_REPLAYS:
                neg_p, _, guessed = heapq.heappop(frontier)
                replays += 1
                try:
                    value = _replay(plan, known, guessed)
                except _Need as need:
                    wave.setdefault(need.key, need.payload)
                    q = 0.5 if need.last is None else (REPEAT if need.last else 1 - REPEAT)
                    heapq.heappush(frontier, (neg_p * q, next(tie), {**guessed, need.key: True}))
                    heapq.heappush(frontier, (neg_p * (1 - q), next(tie), {**guessed, need.key: False}))
                    continue
                if not guessed:  # the real history is complete: the search is over
                    outcome = ("done", value)
                    break
            if outcome is not None:
                break
            keys = list(wave)
            stats: dict = {}
            results = p.map(fn, [make_shard(key, wave[key]) for key in keys], stats=stats)
            record["retries"] += stats.get("retries", 0)
            if p.engine == "local":
                cpu_local += stats.get("cpu_s", 0.0)
            for pid, c in (stats.get("cpu_s_by_pid") or {}).items():
                cpu_by_pid[pid] = max(cpu_by_pid.get(pid, 0.0), c)
            record["waves"] += 1
            record["candidates_run"] += len(keys)
            known.update(zip(keys, results))
            say(
                f"wave {record['waves']}: {len(keys)} candidate(s) on {p.workers} {p.engine} worker(s), "
                f"{stats.get('wall_s', 0):.1f} s"
            )
    finally:
        if own:
            p.__exit__(None, None, None)
    used = _used_keys(plan, known)
    record["candidates_unused"] = record["candidates_run"] - len(used)
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    # CPU seconds the candidates got (Ray: the workers' whole lives, start-up and imports included)
    record["cpu_s"] = round(cpu_local if p.engine == "local" else sum(cpu_by_pid.values()), 2)
    return outcome[1], record


def _used_keys(plan, known: dict) -> list:
    used = []

    def trial(key, payload):
        used.append(key)
        return known[key]

    plan(trial)
    return list(dict.fromkeys(used))
