"""Headless Chromium for `portrait device-check --headless`: start the system browser on a URL, stop it.

The browser only opens the check page; the page itself posts everything back to the server that served
it (device_check.py), exactly as a phone's browser does with `--serve`. So no browser driver (CDP,
Puppeteer, Playwright) is needed: a headless Chromium process and its stderr are enough.

WebGPU and WebGL run on Chromium's software adapter (SwiftShader) where the machine has no GPU: the
flags below turn it on; a real phone's browser uses its own GPU.

Not for: serving or judging (device_check.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from toolchain.errors import InputError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

FLAGS = (
    "--headless=new",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-dev-shm-usage",  # containers (CI) often have a small /dev/shm: Chromium crashes on large pages
    # WebGPU (LiteRT.js webgpu) and WebGL (MediaPipe GPU) on the software adapter when no GPU is present
    "--enable-unsafe-webgpu",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--use-webgpu-adapter=swiftshader",
)


def find_chromium() -> str:
    """Path of the browser: $PORTRAIT_CHROMIUM, else the first of CANDIDATES on PATH."""
    env = os.environ.get("PORTRAIT_CHROMIUM", "").strip()
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise InputError(
                f"PORTRAIT_CHROMIUM={env} is not an executable file",
                fix="point it at a Chromium or Chrome binary, or unset it",
            )
        return env
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise InputError(
        "no Chromium found for the headless device check (looked for " + ", ".join(CANDIDATES) + " on PATH)",
        fix="install it (Debian: apt-get install chromium), set PORTRAIT_CHROMIUM=/path/to/chrome, "
        "or open the page on a phone with `portrait device-check --serve 0.0.0.0:8000`",
    )


class HeadlessChromium:
    """A headless Chromium showing one URL until `close()` (a context manager)."""

    def __init__(self, url: str, *, binary: str | None = None):
        self.binary = binary or find_chromium()
        self.profile = tempfile.TemporaryDirectory(prefix="portrait-chromium-")
        self.log_path = Path(self.profile.name) / "stderr.log"
        args = [self.binary, *FLAGS, f"--user-data-dir={self.profile.name}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox (CI runs as root)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- the browser writes to it until close()
        try:
            self.proc = subprocess.Popen(
                [*args, url],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise InputError(f"cannot start {self.binary}: {exc}", fix="check the Chromium install") from exc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def close(self) -> None:
        # the browser and its renderer / GPU processes share the process group started for it
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        self.profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
