"""The MediaPipe client environment: `.venv-client`, created by the Makefile from
requirements-client.lock, and the one way the main code calls into it (a subprocess running
_client_worker.py with a JSON request).

Why a second environment: mediapipe pulls opencv-contrib-python, which clashes with the main
environment's opencv-python-headless (two OpenCV distributions in one site-packages overwrite each
other's cv2). Not for: deciding what to run (metadata.py, verify.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from .. import paths
from ..errors import PortraitError

WORKER = Path(__file__).resolve().parent / "_client_worker.py"
MARKER = "@@REPLY@@"


class ClientEnvMissing(PortraitError):
    """The MediaPipe client environment is not there."""


class ClientError(PortraitError):
    """The client worker failed (a bug or a broken environment, not a contract mismatch)."""


def client_python() -> Path | None:
    """PORTRAIT_CLIENT_PYTHON, else <repo>/.venv-client/bin/python; None when absent."""
    env = os.environ.get("PORTRAIT_CLIENT_PYTHON")
    cand = Path(env) if env else paths.REPO_ROOT / ".venv-client" / "bin" / "python"
    return cand if cand.is_file() else None


def require_client() -> Path:
    py = client_python()
    if py is None:
        raise ClientEnvMissing(
            "the MediaPipe client environment (.venv-client) is missing",
            where=str(paths.REPO_ROOT / ".venv-client"),
            fix="run `make client-env` (or `make test` / `make export-int8`, which create it), "
            "or set PORTRAIT_CLIENT_PYTHON to a python with mediapipe==1.2.3",
        )
    return py


def call(command: str, request: dict, *, timeout_s: float = 600) -> dict:
    """Run one worker command in the client environment; returns its JSON reply."""
    py = require_client()
    with tempfile.TemporaryDirectory(prefix="portrait-client-") as tmp:
        req = Path(tmp) / "request.json"
        req.write_text(json.dumps(request))
        env = {**os.environ, "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)  # the worker imports nothing from the main environment
        try:
            # the caller's working folder, so relative bundle paths mean the same to the worker (running a
            # script puts its own folder on sys.path, not the working folder)
            proc = subprocess.run(
                [str(py), str(WORKER), command, str(req)], capture_output=True, text=True, timeout=timeout_s, env=env
            )
        except subprocess.TimeoutExpired:
            raise ClientError(
                f"MediaPipe client command {command!r} took over {timeout_s:.0f} s", where=str(py)
            ) from None
    reply = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not reply:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise ClientError(
            f"MediaPipe client command {command!r} failed (exit {proc.returncode}): " + "\n".join(tail),
            where=str(py),
            fix="the worker's last lines are above; if they show a broken environment, recreate it:"
            " rm -rf .venv-client && make client-env",
        )
    return json.loads(reply[-1][len(MARKER) :])


def version() -> str | None:
    """mediapipe version in the client environment, or None when it is absent."""
    if client_python() is None:
        return None
    return call("version", {})["mediapipe"]
