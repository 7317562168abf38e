"""Where shards run: in this process ("local") or on a Ray cluster ("ray").

`map_shards(fn, shards, engine=...)` returns `[fn(s) for s in shards]`, in order, whichever engine
runs it: the engine only decides where `fn` runs, never what it computes, so both engines give the
same results by construction. `fn` must be a module-level function (Ray ships it by reference) and
the shards small picklable descriptions (file paths, indices), not the data itself.

Ray: one actor per worker (1 CPU each); an actor is a long-lived process, so whatever `fn` caches
at module level (a loaded bundle) is loaded once per worker. At most two shards are in flight per
actor, and results come back one shard at a time, so a worker's memory is bounded by the shard size.
A worker that dies mid-shard (killed, out of memory) is replaced and its shards are run again; each
shard's result is taken once, so every item is counted exactly once. Ray is imported only here and
only for engine="ray": the local engine has no Ray requirement.

`pool(engine=...)` keeps the workers between several `map` calls: the export ladder's candidate
searches (parity/waves.py) run one wave of candidates after another on the same workers.

Not for: what a shard computes (evaluate/accuracy.py evaluates images; parity/mixed.py judges candidates).
"""

from __future__ import annotations

import importlib
import os
import resource
import sys
import time
from collections import deque

import cv2
from tqdm import tqdm

from .errors import InputError, PortraitError

ENGINES = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2


class EngineError(PortraitError):
    """The engine could not run the shards (cluster unreachable, a shard failing on every retry)."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def map_shards(
    fn,
    shards: list,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress=None,
    unit: str = "items",
    sizes: list[int] | None = None,
    max_retries: int = 3,
    stats: dict | None = None,
) -> list:
    """[fn(shard) for shard in shards] on the chosen engine, in the order of `shards`.

    engine: "local" (this process, the default) or "ray" (`address` joins an existing cluster, e.g.
    "127.0.0.1:6379" or "auto"; without it a local Ray instance with `workers` CPUs is started and
    stopped). workers: Ray actors (default: the cluster's CPUs). progress: True shows a progress bar
    with ETA on stderr, counting `sizes[i]` (default 1) `unit`s per shard. max_retries: how often a
    shard whose worker died is run again. stats (a dict, filled in): engine, workers, retries,
    wall_s, peak_rss_mb per worker process, cpu_s (CPU seconds the workers used).

    One call = one pool (workers started, used, stopped). For several rounds of shards on the same
    workers (a search whose next candidates depend on the last results) use `pool()`.
    """
    stats = stats if stats is not None else {}
    t0 = time.perf_counter()
    with pool(engine=engine, address=address, workers=workers) as p:
        results = p.map(fn, shards, progress=progress, unit=unit, sizes=sizes, max_retries=max_retries, stats=stats)
        stats["ray_init_s"] = p.init_s
    if engine == "local":
        stats.pop("ray_init_s", None)
    stats["wall_s"] = round(time.perf_counter() - t0, 3)
    return results


def pool(*, engine: str = "local", address: str | None = None, workers: int | None = None):
    """A context manager yielding a pool whose `map(fn, shards, ...)` (same arguments and result as
    map_shards) can be called many times on the same workers: Ray is started (or joined) once, the
    actors live until the block ends, and whatever `fn` caches at module level stays loaded between
    calls. `pool.workers` is the number of workers (1 for local)."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", fix=f"use one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise InputError("--address needs --engine ray", fix="add --engine ray, or drop --address")
    return _LocalPool() if engine == "local" else _RayPool(address, workers)


class _LocalPool:
    workers, init_s, engine = 1, 0.0, "local"

    def __enter__(self):
        return self

    def preload(self, modules: list[str]) -> None:
        """Import `modules` on every worker ahead of the first map (here: this process, already done)."""

    def __exit__(self, *exc):
        return False

    def map(self, fn, shards, *, progress=None, unit="items", sizes=None, max_retries=3, stats=None) -> list:
        sizes = list(sizes) if sizes is not None else [1] * len(shards)
        stats = stats if stats is not None else {}
        stats.update({"engine": "local", "shards": len(shards), "retries": 0})
        t0 = time.perf_counter()
        bar = _bar(progress, sum(sizes), unit)
        try:
            results, c0 = [], cpu_s()
            for s, n in zip(shards, sizes):
                results.append(fn(s))
                bar.update(n)
        finally:
            bar.close()
        stats.update(
            {
                "workers": 1,
                "peak_rss_mb": {str(os.getpid()): round(peak_rss_mb(), 1)},
                "cpu_s": round(cpu_s() - c0, 2),
                "wall_s": round(time.perf_counter() - t0, 3),
            }
        )
        return results


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(progress, total: int, unit: str):
    if not progress:
        return _NoBar()
    return tqdm(
        total=total,
        unit=f" {unit}",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining} ETA, {rate_fmt}]",
    )


class _ShardWorker:
    """A Ray actor: one process that runs shard after shard (module-level caches persist)."""

    def __init__(self):
        cv2.setNumThreads(1)  # one CPU per actor: no oversubscription from OpenCV's own pool

    def preload(self, modules):
        for m in modules:
            importlib.import_module(m)
        return os.getpid()

    def run(self, fn, shard):
        try:
            return True, fn(shard), os.getpid(), (peak_rss_mb(), cpu_s())
        except Exception as exc:  # fn's own error goes back to the driver as it is (not retried)
            return False, exc, os.getpid(), (peak_rss_mb(), cpu_s())


class _RayPool:
    """Ray started (or joined) once, `n` actors kept across `map` calls, replaced when they die."""

    engine = "ray"

    def __init__(self, address, workers):
        self.address, self.asked = address, workers
        self.started, self.actors, self.init_s = False, [], 0.0

    def __enter__(self):
        try:
            # Ray: optional (--engine ray); the local engine runs without it
            import ray
        except ImportError as exc:
            raise EngineError(
                "Ray is not installed", fix="pip install -r requirements.lock, or use --engine local"
            ) from exc
        self.ray = ray
        address, workers = self.address, self.asked
        t0 = time.perf_counter()
        if not ray.is_initialized():
            kw = dict(logging_level="ERROR", log_to_driver=False)
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    # address="local": never a stray cluster. Ray starts workers at nice 15 to keep its own
                    # processes responsive; here the workers are the job, so they run at the driver's priority.
                    ray.init(
                        address="local",
                        num_cpus=workers or os.cpu_count(),
                        include_dashboard=False,
                        object_store_memory=256 * 1024 * 1024,
                        _system_config={"worker_niceness": 0},
                        **kw,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(
                    f"cannot {'join the Ray cluster at ' + address if address else 'start Ray'}: {exc}",
                    fix="check `ray status --address ADDR` on the head node, or use --engine local",
                ) from exc
            self.started = True
        try:
            self.init_s = round(time.perf_counter() - t0, 2)
            self.Worker = ray.remote(num_cpus=1, max_restarts=0)(_ShardWorker)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = workers or max(1, cpus)
            if n > cpus:
                print(
                    f"warning: {n} workers asked for, the cluster has {cpus} CPUs now; the others start only when "
                    f"the autoscaler adds nodes (use --workers {cpus} otherwise)",
                    file=sys.stderr,
                )
            self.workers = n
            self.actors = [self.Worker.remote() for _ in range(n)]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def preload(self, modules: list[str]) -> None:
        """Start importing `modules` on every worker now, without waiting (a map queues behind it): the
        workers load TensorFlow while the driver does its own work."""
        for a in self.actors:
            a.preload.remote(list(modules))

    def __exit__(self, *exc):
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # already dead
                pass
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False
        return False

    def map(self, fn, shards, *, progress=None, unit="items", sizes=None, max_retries=3, stats=None) -> list:
        ray, actors, n = self.ray, self.actors, self.workers
        sizes = list(sizes) if sizes is not None else [1] * len(shards)
        stats = stats if stats is not None else {}
        stats.update({"engine": "ray", "shards": len(shards), "retries": 0, "workers": n})
        t0 = time.perf_counter()
        bar = _bar(progress, sum(sizes), unit)
        results, done = [None] * len(shards), [False] * len(shards)
        attempts = [0] * len(shards)
        queue = deque(range(len(shards)))
        pending: dict = {}  # object ref -> (shard index, worker slot, actor handle)
        peak: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def submit(slot: int) -> None:
            i = queue.popleft()
            attempts[i] += 1
            pending[actors[slot].run.remote(fn, shards[i])] = (i, slot, actors[slot])

        try:
            for _ in range(IN_FLIGHT_PER_WORKER):  # round-robin, so every worker starts with a shard
                for slot in range(n):
                    if queue:
                        submit(slot)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                i, slot, actor = pending.pop(ready[0])
                try:
                    ok, res, pid, rss = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    stats["retries"] += 1
                    if attempts[i] > max_retries:
                        raise EngineError(
                            f"shard {i} failed {attempts[i]} times: its worker died each time ({exc})",
                            fix="look for out-of-memory kills (`ray status`), or run with fewer workers",
                        ) from None
                    if actors[slot] is actor:  # replace the dead worker once; its other shards come back here too
                        actors[slot] = self.Worker.remote()
                    queue.appendleft(i)
                    submit(slot)
                    continue
                except ray.exceptions.RayTaskError as exc:  # the shard never ran: arguments or code did not load
                    raise EngineError(
                        f"a Ray worker could not run shard {i}: {str(exc).splitlines()[-1]}",
                        fix="install this repository (make setup) at the same path on every node, "
                        "with the bundle and the dataset reachable there",
                    ) from None
                if not ok:
                    raise res  # fn raised: the same error as the local engine gives
                peak[str(pid)] = max(peak.get(str(pid), 0.0), round(rss[0], 1))
                cpu[str(pid)] = max(cpu.get(str(pid), 0.0), rss[1])  # cumulative per process
                if not done[i]:
                    results[i], done[i] = res, True
                    bar.update(sizes[i])
                if queue:
                    submit(slot)
        finally:
            bar.close()
            for ref in pending:  # an error above: do not leave shards running into the next map
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
        stats["peak_rss_mb"] = peak
        stats["cpu_s"] = round(sum(cpu.values()), 2)  # the workers' CPU time, start-up and loading included
        stats["cpu_s_by_pid"] = {k: round(v, 2) for k, v in cpu.items()}  # cumulative per worker process
        stats["attempts"] = attempts
        stats["wall_s"] = round(time.perf_counter() - t0, 3)
        return results
