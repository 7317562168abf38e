"""The house's imports run one way: parsed with `ast`, never executed.

- `toolchain` never imports `device_sim` or `experiments` (those consume the library);
- no import cycle between project modules (a package's `__init__` counts as a module, and importing
  `a.b.c` from outside package `a.b` runs `a/b/__init__.py` too);
- every import points to the same or a lower layer of LAYERS;
- imports sit at module top, except a heavy optional dependency (HEAVY) imported inside a function
  with a comment saying why on its line or just above its group of imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("toolchain", "device_sim", "experiments")

# Top to bottom; a module may import from its own layer or any layer below it. A module belongs to the
# layer of the longest prefix that names it. A lower layer that needs a higher one's work takes it as an
# argument (quantize/ladder.py gets parity/mixed.py's search from export.py), not as an import.
LAYERS: list[tuple[str, ...]] = [
    ("device_sim", "experiments"),  # consumers of the library, run with python -m
    ("toolchain.cli",),
    # commands built on the export: the simulator, evaluation, and docs/results.md from their records
    ("toolchain.sim", "toolchain.evaluate", "toolchain.report"),
    ("toolchain.export",),
    # the browser check judges files as verify feeds them (handoff), so it sits above handoff
    ("toolchain.device.device_check", "toolchain.device.browser_bench"),
    ("toolchain.parity",),
    ("toolchain.recipes",),  # validates [ladder] with quantize/ladder.py
    ("toolchain.quantize",),
    ("toolchain.handoff",),
    ("toolchain.device",),  # goldens and the checker run the render stage
    ("toolchain.render",),
    ("toolchain.latency",),  # latency of a .tflite (LiteRT)
    (
        "toolchain.sources",
        "toolchain.bundle",
        "toolchain.bundle_loader",
        "toolchain.runtime",
        "toolchain.calibration_set",
        "toolchain.engines",
    ),
    ("toolchain.cache",),
    ("toolchain.depth", "toolchain.registry", "toolchain.scenes", "toolchain.images"),
    ("toolchain.errors", "toolchain.paths", "toolchain"),  # `toolchain` itself: __version__
]

# Imported inside a function only, each with a comment saying why.
HEAVY = {
    "tensorflow": "~3 s to import; `portrait --help` takes 0.03 s without it (loaded when a conversion runs)",
    "tf2onnx": "imports TensorFlow",
    "keras": "imports TensorFlow",
    "ray": "optional: --engine ray only",
    "mediapipe": "installed only in the client environment (.venv-client)",
    "playwright": "browser driver, optional",
    "selenium": "browser driver, optional",
}

# Files another session is rewriting right now: their in-function imports are hoisted when that work lands.
IN_FUNCTION_PENDING: set[str] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The project module `name` denotes (a module, or the package for a name inside it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Project modules an import statement runs: each named module and the packages above it that the
    importer is not already inside."""
    path = MODULES[module]
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
            base = ".".join(up + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = set()
    for n in names:
        t = _resolve(n)
        if t is None:
            continue
        parts = t.split(".")
        for k in range(1, len(parts) + 1):
            pkg = ".".join(parts[:k])
            # running a package's __init__ counts, unless the importer is that package or inside it
            if (k == len(parts) or _is_package(pkg)) and not (module == pkg or module.startswith(pkg + ".")):
                out.add(pkg)
    return out


def _imports():
    """(module, import node, inside a function?) for every import of every project module."""
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield module, node, id(node) in in_function


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, node, _ in _imports():
        graph[module] |= _targets(module, node) - {module}
    return graph


def _layer(module: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    assert layer is not None, f"{module} is in no layer: add it to LAYERS in tests/test_imports.py"
    return layer


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


def test_toolchain_never_imports_its_consumers():
    bad = [
        f"{m} -> {t}"
        for m, ts in _edges().items()
        if m.split(".")[0] == "toolchain"
        for t in ts
        if t.split(".")[0] in ("device_sim", "experiments")
    ]
    assert not bad, "toolchain imports a consumer:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = _edges()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    bad = [
        f"{m} (layer {_layer(m)}) -> {t} (layer {_layer(t)})"
        for m, ts in _edges().items()
        for t in sorted(ts)
        if _layer(t) < _layer(m)
    ]
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def _comment_above(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or on the line above its contiguous group of imports."""
    i = lineno - 1
    if "#" in lines[i]:
        return True
    j = i - 1
    while j >= 0 and lines[j].strip().startswith(("import ", "from ", "#")):
        if lines[j].strip().startswith("#"):
            return True
        j -= 1
    return False


def test_imports_sit_at_module_top():
    bad = []
    for module, node, inside in _imports():
        path = MODULES[module]
        rel = path.relative_to(ROOT).as_posix()
        if not inside or rel in IN_FUNCTION_PENDING:
            continue
        top = (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
        heavy = node.level == 0 if isinstance(node, ast.ImportFrom) else True
        if heavy and top.split(".")[0] in HEAVY:
            if not _comment_above(path.read_text().splitlines(), node.lineno):
                bad.append(f"{rel}:{node.lineno}: {top} inside a function needs a one-line comment saying why")
            continue
        bad.append(f"{rel}:{node.lineno}: import of {top or '.'} inside a function: move it to the module top")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "src,expected",
    [
        ("from ..quantize import flatbuffer", {"toolchain.quantize", "toolchain.quantize.flatbuffer"}),
        ("from . import agreement", {"toolchain.parity.agreement"}),
        ("from ..errors import InputError", {"toolchain.errors"}),
        ("import numpy as np", set()),
    ],
)
def test_the_parser_resolves_relative_imports(src, expected):
    node = ast.parse(src).body[0]
    assert _targets("toolchain.parity.gate", node) == expected
