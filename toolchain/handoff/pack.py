"""`portrait pack`: one reproducible zip per bundle, <id>-<version>.zip, holding the bundle folder
(models, labels, manifest, goldens, model card README.md) under <id>-<version>/ and SHA256SUMS.

Reproducible: entries in sorted order, fixed timestamps (1980-01-01), fixed permissions, one
compression setting; the same bundle gives the same bytes. Not for: checking (verify.py).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from ..bundle_loader import open_bundle
from ..errors import InputError
from .card import render_card
from .metadata import bundle_version
from .verify import verify as run_verify

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever the host
    zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def pack(bundle: str | Path, out_dir: str | Path, *, verify: bool = True, progress=None) -> Path:
    """Write <out_dir>/<id>-<version>.zip from a bundle folder; returns its path. With verify, a bundle
    that fails `portrait verify` is refused (InputError naming the failures)."""
    opened = open_bundle(bundle)  # integrity first: a damaged bundle is named, never packed
    if opened.from_zip:
        opened.close()
        raise InputError(f"{bundle} is already a zip", fix="pass the bundle folder or its model id")
    bundle = opened.root
    if verify:
        report = run_verify(bundle)
        if progress:
            progress(report.format())
        if not report.passed:
            raise InputError(
                "the bundle fails `portrait verify`; not packed",
                where=str(bundle),
                fix="; ".join(f"{c.file}: {c.field}: {c.message}" for c in report.failures)[:2000],
            )
    manifest = opened.manifest
    stem = f"{manifest['model_id']}-{bundle_version(manifest)}"
    files = {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}
    if "README.md" not in files:  # a bundle from before the card: render it from the manifest
        files["README.md"] = render_card(manifest, bundle).encode()
    sums = "".join(f"{_sha(data)}  {name}\n" for name, data in sorted(files.items()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            _entry(zf, f"{stem}/{name}", files[name])
        _entry(zf, f"{stem}/SHA256SUMS", sums.encode())
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    return target


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
