"""`docs/results.md` from the record: the bundles' manifests, `make bench`'s JSON and the evaluation reports.

Every figure in the page is read from one of those files; none is typed by hand. Each source is listed
with the date it was written (its own stamp, else the file's modification time, UTC), the host ISA it
was measured on and the command that makes it. A missing source gets a line naming that command, not
an error. Not for: measuring anything (`portrait export`, `portrait bench` and `portrait evaluate` do).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .bundle_loader import list_bundles
from .errors import InputError
from .export import WHOLE_RUN_RECORD

DEFAULT_BENCH_JSON = paths.REPO_ROOT / "export" / "bench" / "bench.json"
DEFAULT_EVAL_DIR = paths.REPO_ROOT / "export" / "eval"
DEFAULT_OUTPUT = paths.REPO_ROOT / "docs" / "results.md"

# evaluation figures shown per task (keys of report.json's figures), lower-is-better ones included
_EVAL_FIGURES = {
    "segmentation": ("miou", "pixel_accuracy", "boundary_f"),
    "matting": ("sad_k", "mse", "grad_k", "conn_k"),
    "depth": ("delta1", "abs_rel", "rmse"),
}
# the card's verify list: "- `FILE` FIELD: STATUS (FIGURES) — MESSAGE"
_VERIFY_LINE = re.compile(
    r"^- `(?P<file>[^`]+)` (?P<field>[\w.]+): (?P<status>[\w ]+?)(?: \((?P<figs>.*?)\))?(?: — (?P<msg>.*))?$"
)


@dataclass
class Source:
    """One file of the record the page is built from."""

    kind: str  # "bundle", "bench" or "evaluation"
    path: Path
    written: str  # UTC date and time
    command: str  # the command that writes it
    isa: str  # host ISA it was measured on ("" when the source does not say)
    data: dict[str, Any] = field(default_factory=dict)
    also: list[Path] = field(default_factory=list)  # files read with it (a bundle's run record)


@dataclass
class Record:
    out_root: Path
    bench_json: Path
    eval_dir: Path
    bundles: list[Source]
    bench: Source | None
    evaluations: list[Source]
    whole_run: Source | None = None  # runs/_whole_run.json: the last multi-model `portrait export`


# ----------------------------------------------------------------------------------- reading


def _shown(path: Path, rec: Record) -> str:
    """A path as the page shows it: relative to the repository it belongs to where it can be."""
    roots = [paths.REPO_ROOT] + ([rec.out_root.parent.parent] if rec.out_root.parent.name == "export" else [])
    for root in roots:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return str(path)


def _mtime(path: Path) -> str:
    t = _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{path.name} is not readable JSON: {exc}",
            where=str(path),
            fix="re-run the command that writes it (listed in docs/results.md), or remove the file",
        ) from None


def _put_back(manifest: Any, path: str, value: Any) -> None:
    """Set one measurement of a run record (a dotted path such as
    `handoff_cpu_choice.candidates.<file>.latency_ms` or `ladder[0].seconds`) back into a manifest copy.
    Keys may hold dots (file names), so each step takes the longest existing key the path starts with."""
    node, rest = manifest, path
    while rest:
        if isinstance(node, list):
            m = re.match(r"\[(\d+)\]\.?", rest)
            if not m or int(m.group(1)) >= len(node):
                return
            node, rest = node[int(m.group(1))], rest[m.end() :]
            continue
        if not isinstance(node, dict):
            return
        keys = [k for k in node if rest == k or rest.startswith(k + ".") or rest.startswith(k + "[")]
        if not keys:
            node[rest] = value  # the key the export took out of the manifest
            return
        key = max(keys, key=len)
        if rest == key:
            node[key] = value
            return
        node, rest = node[key], rest[len(key) :].lstrip(".")


def with_run_record(manifest: dict, out_root: Path) -> tuple[dict, Path | None]:
    """The manifest with its export run's measurements (runs/<model_id>.json beside the bundles: latencies,
    seconds, cache hits, kept out of the bundle so that it is reproducible) put back in, and that file."""
    run_path = out_root / "runs" / f"{manifest.get('model_id')}.json"
    if not run_path.is_file():
        return manifest, None
    merged = json.loads(json.dumps(manifest))
    for key, value in _read_json(run_path).items():
        if key not in ("model_id", "what", "total_seconds"):
            _put_back(merged, key, value)
    return merged, run_path


def read_record(out_root: Path | None = None, bench_json: Path | None = None, eval_dir: Path | None = None) -> Record:
    """Every source found: bundles under out_root, the bench JSON and evaluation reports under eval_dir."""
    out_root = Path(out_root or paths.out_dir())
    bench_json = Path(bench_json or DEFAULT_BENCH_JSON)
    eval_dir = Path(eval_dir or DEFAULT_EVAL_DIR)
    bundles = []
    for manifest in (folder / "manifest.json" for folder in list_bundles(out_root)):  # never a staging folder
        m, run_path = with_run_record(_read_json(manifest), out_root)
        isa = ((m.get("handoff_cpu_choice") or {}).get("isa") or {}).get("summary") or (
            m.get("measured_with") or {}
        ).get("host", "")
        bundles.append(
            Source(
                "bundle",
                manifest,
                _mtime(manifest),
                f"portrait export {m.get('model_id', manifest.parent.name)}",
                isa,
                m,
                [run_path] if run_path else [],
            )
        )
    bench = None
    if bench_json.is_file():
        b = _read_json(bench_json)
        stamp = b.get("written") or {} if isinstance(b, dict) else {}
        rows = b if isinstance(b, list) else b.get("models") or []  # older files: a bare list of model rows
        isa = (
            stamp.get("host_isa")
            or next((r.get("isa") for r in rows if r.get("isa")), "")
            or ((b.get("render") or {}).get("host") if isinstance(b, dict) else "")
            or ""
        )
        bench = Source(
            "bench",
            bench_json,
            stamp.get("at") or _mtime(bench_json),
            stamp.get("command") or "portrait bench (make bench)",
            isa,
            b if isinstance(b, dict) else {"models": b},
        )
    evaluations = []
    for rep in sorted(eval_dir.glob("*/report.json")) if eval_dir.is_dir() else []:
        r = _read_json(rep)
        ds = (r.get("dataset") or {}).get("root", "?")
        eng = (r.get("engine") or {}).get("engine")
        cmd = f"portrait evaluate {r.get('model_id', '?')} --dataset {ds}" + (f" --engine {eng}" if eng else "")
        evaluations.append(Source("evaluation", rep, _mtime(rep), cmd, (r.get("host") or {}).get("machine", ""), r))
    whole = None
    whole_path = out_root / "runs" / WHOLE_RUN_RECORD
    if whole_path.is_file():
        w = _read_json(whole_path)
        stamp = w.get("written") or {}
        whole = Source(
            "export run",
            whole_path,
            stamp.get("at") or _mtime(whole_path),
            stamp.get("command") or "portrait export --all",
            stamp.get("host_isa") or "",
            w,
        )
    return Record(out_root, bench_json, eval_dir, bundles, bench, evaluations, whole)


def verify_checks(bundle: Path) -> list[dict]:
    """The `portrait verify` checks recorded at export, read from the bundle's model card (README.md)."""
    card = bundle / "README.md"
    if not card.is_file():
        return []
    checks, inside = [], False
    for line in card.read_text().splitlines():
        if line.startswith("`portrait verify` at export"):
            inside = True
            continue
        if inside and line.startswith("## "):
            break
        match = _VERIFY_LINE.match(line) if inside else None
        if match:
            checks.append({k: (v or "") for k, v in match.groupdict().items()})
    return checks


# ----------------------------------------------------------------------------------- formatting


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if v != 0 and abs(v) < 1e-3 else f"{v:.4g}"
    return str(v)


def _cell(v: Any) -> str:
    return _num(v).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return []
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(v) for v in r) + " |" for r in rows),
        "",
    ]


def _code(name: Any) -> str:
    return f"`{name}`" if name else "-"


def _figure_key(budget: str) -> str:
    return re.sub(r"_(min|max)$", "", budget)


def _dtype(spec: dict | None) -> str:
    if not spec:
        return "-"
    q = f" (scale {_num(spec['scale'])}, zp {spec.get('zero_point')})" if spec.get("scale") else ""
    return f"{spec.get('dtype')}{q}"


# ----------------------------------------------------------------------------------- sections


def _sources(rec: Record) -> list[str]:
    lines = ["## Sources", "", "Each table below names its source. Dates are when the source was written (UTC).", ""]
    rows = [
        [f"`{_shown(p, rec)}`", _mtime(p) if p != s.path else s.written, f"`{s.command}`", s.isa or "-"]
        for s in rec.bundles
        for p in (s.path, *s.also)
    ]
    for extra in (rec.whole_run, rec.bench):
        if extra:
            rows.append([f"`{_shown(extra.path, rec)}`", extra.written, f"`{extra.command}`", extra.isa or "-"])
    rows += [[f"`{_shown(s.path, rec)}`", s.written, f"`{s.command}`", s.isa or "-"] for s in rec.evaluations]
    lines += _table(["source", "written", "command", "host ISA"], rows)
    if not rec.bundles:
        lines.append(
            f"- No bundle in `{_shown(rec.out_root, rec)}`: `make export-int8` (or `portrait export ID`) writes them."
        )
    if rec.bench is None:
        lines.append(f"- No `{_shown(rec.bench_json, rec)}`: `make bench` (`portrait bench`) writes it.")
    if not rec.evaluations:
        lines.append(
            f"- No evaluation report in `{_shown(rec.eval_dir, rec)}`: `portrait evaluate ID --dataset DIR` writes "
            "`export/eval/<id>--<set>/report.json`."
        )
    return lines + [""]


def _handoffs(rec: Record) -> list[str]:
    lines = [
        "## Handoff per model",
        "",
        (
            "Which file an app ships (`handoff`: the first ladder rung that met every budget on both kernel "
            "sets; `handoff_cpu`: the fastest file on XNNPACK that meets; any other `handoff_*` key the "
            "manifest carries), from each `manifest.json`."
        ),
        "",
    ]
    keys = sorted(
        {
            k
            for s in rec.bundles
            for k, v in s.data.items()
            if k.startswith("handoff") and isinstance(v, str) and v.endswith((".tflite", ".onnx"))
        },
        key=lambda k: (k != "handoff", k),
    )
    rows = []
    for s in rec.bundles:
        m = s.data
        mw = m.get("measured_with") or {}
        rows.append(
            [
                _code(m.get("model_id")),
                m.get("task"),
                *(_code(m.get(k)) for k in keys),
                m.get("handoff_label") or m.get("handoff_rung"),
                m.get("export_seconds"),
                f"{mw.get('interpreter', '-')}, {mw.get('converter', '-')}",
            ]
        )
    lines += _table(["model", "task", *(f"`{k}`" for k in keys), "handoff rung", "export s", "measured with"], rows)
    w = rec.whole_run
    if w:
        load = (w.data.get("written") or {}).get("load_avg_1_5_15min")
        lines += [
            f"Whole run (`{_shown(w.path, rec)}`, {w.written}): `{w.command}` took {w.data.get('wall_seconds')} s "
            f"wall, conversion cache {w.data.get('conversion_cache', '?')}; host {w.isa or '?'}"
            + (f", load average {', '.join(str(x) for x in load)} when it ended" if load else "")
            + ". Per model (s, from its own start): "
            + ", ".join(
                f"`{mid}` {m.get('status')}" + (f" {m['seconds']}" if m.get("seconds") is not None else "")
                for mid, m in (w.data.get("models") or {}).items()
            )
            + ".",
            "",
        ]
    return lines


def _clients(entries: list) -> str:
    """The measured clients of one file as `runtime backend: status` (a name alone for an old manifest)."""
    out = []
    for e in entries:
        if isinstance(e, dict):
            out.append(f"{e.get('runtime')} {e.get('backend')}: {e.get('status')}")
        else:
            out.append(str(e))
    return "; ".join(out) or "-"


def _bundle_section(s: Source, rec: Record) -> list[str]:
    m = s.data
    mid = m.get("model_id", s.path.parent.name)
    lines = [
        f"## `{mid}`",
        "",
        f"Source: `{_shown(s.path, rec)}` ({s.written}, `{s.command}`; host {s.isa or 'not recorded'}).",
        "",
    ]
    files, models = m.get("files") or {}, m.get("models") or {}
    lines += ["### Files", ""]
    lines += _table(
        [
            "file",
            "precision",
            "rung",
            "bytes",
            "input",
            "outputs",
            "float ops",
            "int16 ops",
            "XNNPACK partitions",
            "clients",
        ],
        [
            [
                _code(n),
                r.get("precision"),
                r.get("rung"),
                (files.get(n) or {}).get("bytes"),
                _dtype(r.get("input")),
                ", ".join(_dtype(o) for o in (r.get("outputs") or {}).values()) or "-",
                r.get("float_op_count"),
                r.get("int16_op_count"),
                (r.get("xnnpack") or {}).get("partitions"),
                _clients(r.get("clients") or []),
            ]
            for n, r in models.items()
        ],
    )
    notes = []
    for key, label in (("import_check", "import vs source file"), ("onnx_check", "ONNX vs TF")):
        c = m.get(key) or {}
        if c.get("max_abs_diff") is not None:
            fig = f"{label}: max abs diff {_num(c['max_abs_diff'])}"
            if c.get("output_range"):
                fig += f" over an output range of {_num(c['output_range'])}"
            budget = c.get("budget")
            budget = (
                ", ".join(f"{k} {_num(v)}" for k, v in budget.items())
                if isinstance(budget, dict)
                else f"max_abs_diff {_num(budget)}"
            )
            notes.append(f"{fig} (budget {budget})")
    if m.get("int8_size_ratio") is not None:
        notes.append(f"int8 / float32 size {_num(m['int8_size_ratio'])}")
    mixed = m.get("mixed_precision") or {}
    if mixed.get("message"):
        notes.append(f"mixed precision: {mixed['message']}")
    if notes:
        lines += ["; ".join(notes) + ".", ""]
    budgets = (m.get("parity") or {}).get("budgets") or {}
    ladder = [r for r in m.get("ladder") or [] if isinstance(r, dict)]
    if ladder:
        lines += ["### Ladder", "", "Every rung tried, in order; figures on each kernel set (XNNPACK / reference).", ""]
        rows = []
        for r in ladder:
            figs = r.get("figures") or {}
            cells = [
                " / ".join(_num((figs.get(k) or {}).get(_figure_key(b))) for k in ("xnnpack", "reference"))
                for b in budgets
            ]
            rows.append(
                [
                    r.get("label") or r.get("rung"),
                    _code(r.get("file")),
                    r.get("met"),
                    r.get("float_ops"),
                    r.get("int16_ops"),
                    *cells,
                    "; ".join(r.get("failures") or []) or "-",
                ]
            )
        lines += _table(
            [
                "rung",
                "file",
                "met",
                "float ops",
                "int16 ops",
                *(f"{_figure_key(b)} (budget {_num(v)})" for b, v in budgets.items()),
                "failures",
            ],
            rows,
        )
    parity = m.get("parity") or {}
    if parity:
        per = parity.get("per_kernels") or parity.get("other_kernels") or {}
        lines += [
            "### Parity of the handoff",
            "",
            (
                f"`{m.get('handoff')}` against float32 on {len(parity.get('images') or [])} images, judged on "
                f"{parity.get('kernels')}; passed: {_num(parity.get('passed'))}."
            ),
            "",
        ]
        lines += _table(
            ["figure", "budget", "XNNPACK", "reference", "judged (worse)"],
            [
                [
                    _figure_key(b),
                    f"{'>=' if b.endswith('_min') else '<='} {_num(v)}",
                    _num((per.get("xnnpack") or {}).get(_figure_key(b))),
                    _num((per.get("reference") or {}).get(_figure_key(b))),
                    _num(parity.get(_figure_key(b))),
                ]
                for b, v in budgets.items()
            ],
        )
        agree = parity.get("kernel_agreement") or {}
        if agree:
            lines += ["XNNPACK vs reference kernels: " + ", ".join(f"{k} {_num(v)}" for k, v in agree.items()), ""]
    choice = m.get("handoff_cpu_choice") or {}
    if choice.get("candidates"):
        lines += [
            "### `handoff_cpu` candidates",
            "",
            f"{choice.get('measured_with', '')}; host {((choice.get('isa') or {}).get('summary')) or '-'}.",
            "",
        ]
        lines += _table(
            ["file", "meets", "judged on", "latency ms"],
            [
                [_code(n), c.get("meets"), c.get("judged_on"), c.get("latency_ms")]
                for n, c in choice["candidates"].items()
            ],
        )
    checks = verify_checks(s.path.parent)
    if checks:
        counts: dict[str, int] = {}
        for c in checks:
            counts[c["status"]] = counts.get(c["status"], 0) + 1
        lines += [
            "### `portrait verify` at export",
            "",
            "From the bundle's model card (README.md): "
            + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            + ".",
            "",
        ]
        lines += _table(
            ["file", "check", "status", "figures"],
            [[_code(c["file"]), c["field"], c["status"], c["figs"] or c["msg"] or "-"] for c in checks],
        )
    return lines


def _bench_section(rec: Record) -> list[str]:
    lines = ["## Speed (`make bench`)", ""]
    if rec.bench is None:
        return lines + [f"No `{_shown(rec.bench_json, rec)}`: `make bench` writes it.", ""]
    b, s = rec.bench.data, rec.bench
    load = (b.get("written") or {}).get("load_avg_1_5_15min")
    lines += [
        f"Source: `{_shown(s.path, rec)}` ({s.written}, `{s.command}`; host {s.isa or 'not recorded'}"
        + (f"; load average {', '.join(_num(x) for x in load)} when written" if load else "")
        + ").",
        "",
    ]
    models = b.get("models") or []
    if models:
        precisions = [
            p
            for p in ("float32", "float16", "dynamic", "int8", "int8_mixed", "w8a16", "mixed_float")
            if any(p in (r.get("ms") or {}) for r in models)
        ]
        lines += [
            "### Model latency",
            "",
            (
                f"ai-edge-litert, XNNPACK ({models[0].get('threads')} threads, median of {models[0].get('runs')} "
                "runs); a w8a16 handoff runs on the built-in CPU kernels (XNNPACK takes no int16 activations)."
            ),
            "",
        ]
        lines += _table(
            ["model", *(f"{p} ms" for p in precisions), "int8 / float32 time", "int8 / float32 size"],
            [
                [
                    _code(r.get("model_id")),
                    *((r.get("ms") or {}).get(p) for p in precisions),
                    r.get("int8_over_float32_latency"),
                    r.get("int8_over_float32_size"),
                ]
                for r in models
            ],
        )
    browser = b.get("browser") or []
    if browser:
        lines += [
            "### Browser latency",
            "",
            "`portrait device-check --headless` per bundle: each backend's median ms, its ratio to the same run's "
            "native XNNPACK figure, and its status (sw GPU: a software GPU, judged but not timed).",
            "",
        ]
        backends = sorted(
            {k for r in browser for cell in (r.get("files") or {}).values() for k in cell if k != "native_ms"}
        )
        rows = []
        for r in browser:
            for f, cell in (r.get("files") or {}).items():
                shown = []
                for k in backends:
                    v = cell.get(k)
                    if not isinstance(v, dict):
                        shown.append("-")
                    elif v.get("ms") is None:
                        shown.append(f"sw GPU, {v.get('status')}" if v.get("software_gpu") else str(v.get("status")))
                    else:
                        ratio = f" ({_num(v['over_native'])}x)" if v.get("over_native") is not None else ""
                        shown.append(f"{_num(v['ms'])}{ratio}, {v.get('status')}")
                rows.append([_code(f), cell.get("native_ms"), *shown])
        lines += _table(["file", "native ms", *(f"{k} ms" for k in backends)], rows)
        first = browser[0]
        lines += [
            f"Browser: {first.get('user_agent')}, {first.get('cores')} cores, WebGPU adapter "
            f"{first.get('webgpu_adapter') or '-'}.",
            "",
        ]
    render = b.get("render") or {}
    sizes = [k for k, v in render.items() if isinstance(v, dict) and "golden_ms" in v]
    if sizes:
        lines += [
            "### Fused render stage",
            "",
            (
                f"cv2 threads {render.get('cv2_threads')}, median of {render.get('repeats')}; "
                f"host {render.get('host', '-')}."
            ),
            "",
        ]
        keys = [
            "baseline_ms",
            "golden_ms",
            "golden_guided_ms",
            "golden_depth_ms",
            "device_ms",
            "device_depth_ms",
            "device_vs_golden",
            "load_avg_1min",
        ]
        lines += _table(
            ["frame", *keys], [[f"{k} ({render[k].get('size')})", *(render[k].get(x) for x in keys)] for k in sizes]
        )
    ev = b.get("evaluate") or {}
    if ev.get("runs"):
        lines += [
            "### Evaluation engines",
            "",
            (
                f"{ev.get('n')} synthetic images, `{Path(str(ev.get('bundle'))).name}`, {ev.get('workers')} Ray "
                f"workers, {ev.get('cpus')} CPUs; host {ev.get('isa', '-')}; per-image numbers identical: "
                f"{_num(ev.get('identical_per_image'))}."
            ),
            "",
        ]
        lines += _table(
            ["engine", "wall s", "CPU s", "peak memory MB", "retries", "load after"],
            [
                [
                    name,
                    r.get("wall_s"),
                    r.get("cpu_s"),
                    max((r.get("peak_rss_mb") or {}).values(), default=None)
                    if isinstance(r.get("peak_rss_mb"), dict)
                    else r.get("peak_rss_mb"),
                    r.get("retries"),
                    ", ".join(_num(x) for x in r.get("load_after") or []),
                ]
                for name, r in ev["runs"].items()
            ],
        )
        lines += [
            (
                f"Speed-up {_num(ev.get('speedup'))}, largest worker {_num(ev.get('max_worker_mb'))} MB; "
                f"targets met: {', '.join(f'{k} {_num(v)}' for k, v in (ev.get('met') or {}).items())}."
            ),
            "",
        ]
    return lines


def _evaluation_section(rec: Record) -> list[str]:
    lines = ["## Accuracy against ground truth (`portrait evaluate`)", ""]
    if not rec.evaluations:
        return lines + [
            f"No report in `{_shown(rec.eval_dir, rec)}`: `portrait evaluate ID --dataset DIR` writes one.",
            "",
        ]
    for s in rec.evaluations:
        r = s.data
        task = r.get("task", "")
        keys = _EVAL_FIGURES.get(task, ())
        ds = r.get("dataset") or {}
        lines += [
            f"### `{r.get('model_id')}` on `{Path(str(ds.get('root', '?'))).name}`",
            "",
            (
                f"Source: `{_shown(s.path, rec)}` ({s.written}, `{s.command}`); {task}, {ds.get('evaluated')} of "
                f"{ds.get('samples')} samples evaluated, {ds.get('bad')} bad. Drop vs float32: positive = worse, "
                "with its 95% bootstrap interval."
            ),
            "",
        ]
        rows = []
        roles = {x.get("file"): x.get("roles") or [] for x in r.get("files") or []}
        for f, figs in (r.get("figures") or {}).items():
            drop, ci = figs.get("drop_vs_float32") or {}, figs.get("drop_ci95") or {}
            main = keys[0] if keys else None
            d = (
                f"{_num(drop.get(main))} [{_num(ci[main][0])}, {_num(ci[main][1])}]"
                if main in drop and main in ci
                else "reference"
                if main
                else "-"
            )
            rows.append(
                [_code(f) + (f" ({', '.join(roles[f])})" if roles.get(f) else ""), *(figs.get(k) for k in keys), d]
            )
        lines += _table(["file", *keys, f"{keys[0] if keys else ''} drop vs float32"], rows)
    return lines


def render(rec: Record) -> str:
    """The page, as markdown."""
    lines = [
        "# Results",
        "",
        (
            "Generated by `make report` (`portrait report`) from the record; do not edit by hand. "
            "Design notes in this folder point here for their figures."
        ),
        "",
    ]
    lines += _sources(rec)
    if rec.bundles:
        lines += _handoffs(rec)
    for s in rec.bundles:
        lines += _bundle_section(s, rec)
    lines += _bench_section(rec)
    lines += _evaluation_section(rec)
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    output: Path | None = None,
    *,
    out_root: Path | None = None,
    bench_json: Path | None = None,
    eval_dir: Path | None = None,
) -> Path:
    """Read the record and write the page; returns its path."""
    output = Path(output or DEFAULT_OUTPUT)
    text = render(read_record(out_root, bench_json, eval_dir))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output
