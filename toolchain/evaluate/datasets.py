"""Labeled validation sets on disk: find the samples, read one sample, make a synthetic set.

Layouts (a `dataset.json` written by `portrait dataset synth` names the task; otherwise the layout
is recognised from the folder):
- segmentation, PASCAL VOC: `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNG whose
  indices are class ids; 255 = void, not scored), optional `ImageSets/Segmentation/val.txt`.
- matting: `images/<id>.<ext>` + `alpha/<id>.png` (8- or 16-bit grey), or a flat folder of photos
  each with a `<id>_alpha*.png` beside it (the layout of ../shared/photos).
- depth: `images/<id>.<ext>` + `depth/<id>.png` (16-bit, millimetres, 0 = no data) or
  `depth/<id>.npy` (metres), or a flat folder of JPEGs that carry their depth (Google GDepth,
  iPhone portrait disparity).

A sample that cannot be read raises `BadSample` with the reason; the evaluation lists it and goes on.
Not for: metrics (truth_metrics.py) or running models (accuracy.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..depth.readers import read_apple_portrait, read_gdepth
from ..engines import map_shards
from ..errors import InputError, PortraitError
from ..scenes import generate_scene

TASKS = ("segmentation", "matting", "depth")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VOID = 255  # VOC: pixels not scored (object boundaries, difficult regions)
SYNTH_CLASS_IDS = {"person": 15, "cat": 8}  # PASCAL VOC ids of the synthetic subjects


class BadSample(Exception):
    """One sample is unusable; the message says why (listed in the report, never counted)."""


@dataclass(frozen=True)
class Sample:
    index: int
    name: str
    image: str  # path of the photo
    truth: str  # path of the ground truth (may be the photo itself for embedded depth)
    kind: str  # "voc_png", "alpha_png", "depth_png_mm", "depth_npy_m", "depth_jpeg"


@dataclass
class Dataset:
    task: str
    root: Path
    layout: str
    samples: list[Sample]
    ignored: list[str]  # files that are not samples (a photo without ground truth in a flat folder)
    meta: dict

    def describe(self) -> str:
        return f"{self.task} set, {self.layout} layout, {len(self.samples)} samples in {self.root}"


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map (256 x 3 uint8): class i's colour from the bits of i."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


# ----------------------------------------------------------------------------------- finding samples


def open_dataset(root: str | Path, task: str | None = None) -> Dataset:
    """The samples of the set in `root`, sorted by name (the order is the sample index)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}", fix="pass a folder (see `portrait evaluate --help`)")
    meta = {}
    if (root / "dataset.json").is_file():
        try:
            meta = json.loads((root / "dataset.json").read_text())
        except ValueError as exc:
            raise InputError(
                f"dataset.json is not valid JSON: {exc}", where=str(root / "dataset.json"), fix="fix or delete the file"
            ) from None
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}", fix=f"use one of {', '.join(TASKS)}")
    task = task or meta.get("task") or _guess_task(root)
    finder = {"segmentation": _voc, "matting": _matting, "depth": _depth}[task]
    layout, samples, ignored = finder(root)
    if not samples:
        raise InputError(
            f"no {task} samples found in {root} ({layout} layout)", where=str(root), fix=_LAYOUT_HELP[task]
        )
    return Dataset(task, root, layout, samples, ignored, meta)


_LAYOUT_HELP = {
    "segmentation": "use the VOC layout: JPEGImages/<id>.jpg + SegmentationClass/<id>.png "
    "(+ optional ImageSets/Segmentation/val.txt)",
    "matting": "use images/<id>.jpg + alpha/<id>.png, or photos with a <id>_alpha.png beside each",
    "depth": "use images/<id>.jpg + depth/<id>.png (16-bit mm) or depth/<id>.npy (metres), "
    "or a folder of GDepth / iPhone portrait JPEGs",
}


def _guess_task(root: Path) -> str:
    if (root / "SegmentationClass").is_dir():
        return "segmentation"
    if (root / "alpha").is_dir() or any("_alpha" in p.stem for p in root.glob("*.png")):
        return "matting"
    if (root / "depth").is_dir() or any(p.suffix.lower() in (".jpg", ".jpeg") for p in root.iterdir()):
        return "depth"
    raise InputError(
        f"cannot tell which kind of dataset {root} is",
        where=str(root),
        fix="pass --task segmentation|matting|depth; " + "; ".join(_LAYOUT_HELP.values()),
    )


def _find_image(folder: Path, stem: str) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suf}", folder / f"{stem}{suf.upper()}"):
            if cand.is_file():
                return cand
    return None


def _voc(root: Path):
    img_dir, gt_dir = root / "JPEGImages", root / "SegmentationClass"
    if not gt_dir.is_dir():
        raise InputError(f"no SegmentationClass/ in {root}", where=str(root), fix=_LAYOUT_HELP["segmentation"])
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    if split.is_file():
        ids = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
        layout = "VOC (ImageSets/Segmentation/val.txt)"
    else:
        ids = sorted(p.stem for p in gt_dir.glob("*.png"))
        layout = "VOC (every SegmentationClass/*.png)"
    samples = []
    for i, sid in enumerate(ids):
        img = _find_image(img_dir, sid)
        samples.append(Sample(i, sid, str(img or img_dir / f"{sid}.jpg"), str(gt_dir / f"{sid}.png"), "voc_png"))
    return layout, samples, []


def _matting(root: Path):
    if (root / "images").is_dir() and (root / "alpha").is_dir():
        stems = sorted(p.stem for p in (root / "alpha").glob("*.png"))
        samples = []
        for i, s in enumerate(stems):
            img = _find_image(root / "images", s)
            samples.append(
                Sample(i, s, str(img or root / "images" / f"{s}.png"), str(root / "alpha" / f"{s}.png"), "alpha_png")
            )
        return "images/ + alpha/", samples, []
    photos = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and "_alpha" not in p.stem)
    samples, ignored = [], []
    for p in photos:
        alphas = sorted(root.glob(f"{p.stem}_alpha*.png"))
        if alphas:
            samples.append(Sample(len(samples), p.stem, str(p), str(alphas[0]), "alpha_png"))
        else:
            ignored.append(f"{p.name}: no {p.stem}_alpha*.png beside it")
    return "flat (<id>.<ext> + <id>_alpha*.png)", samples, ignored


def _depth(root: Path):
    if (root / "images").is_dir() and (root / "depth").is_dir():
        samples = []
        truths = sorted({p.stem: p for p in (root / "depth").iterdir() if p.suffix.lower() in (".png", ".npy")}.items())
        for i, (s, gt) in enumerate(truths):
            img = _find_image(root / "images", s)
            kind = "depth_npy_m" if gt.suffix.lower() == ".npy" else "depth_png_mm"
            samples.append(Sample(i, s, str(img or root / "images" / f"{s}.png"), str(gt), kind))
        return "images/ + depth/", samples, []
    samples = [
        Sample(i, p.stem, str(p), str(p), "depth_jpeg")
        for i, p in enumerate(sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")))
    ]
    return "flat (JPEGs with embedded depth: GDepth or iPhone portrait)", samples, []


# ----------------------------------------------------------------------------------- reading one sample


def _read_rgb(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise BadSample(f"image missing: {Path(path).name}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise BadSample(f"image does not decode: {Path(path).name}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_sample(sample: Sample, *, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB image, ground truth) or BadSample. Ground truth: class ids (uint8, 255 = void) for
    segmentation, alpha in [0, 1] (float32) for matting, depth (float32, metres or the file's own
    unit; 0 or NaN = no data) for depth, each at its own resolution."""
    if sample.kind == "depth_jpeg":
        return _embedded_depth(sample.image)
    rgb = _read_rgb(sample.image)
    if not Path(sample.truth).is_file():
        raise BadSample(f"ground truth missing: {Path(sample.truth).name}")
    truth = {"voc_png": _voc_labels, "alpha_png": _alpha, "depth_png_mm": _depth_png, "depth_npy_m": _depth_npy}[
        sample.kind
    ](sample.truth)
    if truth.shape[:2] != rgb.shape[:2]:
        raise BadSample(
            f"size mismatch: image {rgb.shape[1]}x{rgb.shape[0]}, ground truth {truth.shape[1]}x{truth.shape[0]}"
        )
    if sample.kind == "voc_png" and num_classes is not None:
        bad = (truth >= num_classes) & (truth != VOID)
        if bad.any():
            raise BadSample(
                f"label out of range: {int(truth[bad].max())} (model has {num_classes} classes, {VOID} = void)"
            )
    return rgb, truth


def _voc_labels(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise BadSample(f"ground truth is a {im.mode} image, not a palette (P) or grey (L) PNG of class ids")
            return np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadSample(f"ground truth does not decode: {Path(path).name} ({exc})") from None


def _alpha(path: str) -> np.ndarray:
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise BadSample(f"alpha does not decode: {Path(path).name}")
    if a.ndim == 3:
        if a.shape[2] == 4:
            a = a[..., 3]
        elif np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
            a = a[..., 0]
        else:
            raise BadSample("alpha is a colour image (expected grey)")
    if a.dtype not in (np.uint8, np.uint16):
        raise BadSample(f"alpha has dtype {a.dtype} (expected 8- or 16-bit)")
    return (a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)).astype(np.float32)


def _depth_png(path: str) -> np.ndarray:
    d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if d is None:
        raise BadSample(f"depth does not decode: {Path(path).name}")
    if d.ndim != 2 or d.dtype != np.uint16:
        raise BadSample(f"depth PNG is {d.dtype} with shape {d.shape} (expected one 16-bit channel, millimetres)")
    return d.astype(np.float32) / 1000.0


def _depth_npy(path: str) -> np.ndarray:
    try:
        d = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BadSample(f"depth .npy does not load: {exc}") from None
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2 or d.dtype.kind not in "fiu":
        raise BadSample(f"depth .npy has shape {d.shape} and dtype {d.dtype} (expected H x W metres)")
    return d.astype(np.float32)


def _embedded_depth(path: str) -> tuple[np.ndarray, np.ndarray]:
    errors = []
    for reader in (read_gdepth, read_apple_portrait):
        try:
            photo = reader(path)
        except PortraitError as exc:
            errors.append(exc.what)
            continue
        if photo.depth_m is not None:
            return photo.image, photo.depth_m.astype(np.float32)
        if photo.disparity is None:
            errors.append(f"{reader.__name__}: neither depth nor disparity")
            continue
        disp = photo.disparity.astype(np.float32)
        return photo.image, np.where(disp > 0, 1.0 / np.maximum(disp, 1e-12), 0).astype(np.float32)
    raise BadSample("no depth found in the JPEG: " + "; ".join(errors))


# ----------------------------------------------------------------------------------- synthetic sets


def synth(
    n: int,
    out: str | Path,
    *,
    task: str = "segmentation",
    seed: int = 0,
    size: tuple[int, int] = (240, 320),
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress=None,
) -> Dataset:
    """A set of `n` synthetic portrait scenes (toolchain/scenes) with exact ground truth, in the
    task's layout. Scene i uses seed `seed + i` and alternates person / cat, so the same arguments
    give the same files, byte for byte. Written into a hidden sibling folder and moved in when
    complete; an existing `out` is replaced only if it is a synthetic set itself (has dataset.json)."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", fix=f"use one of {', '.join(TASKS)}")
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "dataset.json").is_file())):
        raise InputError(
            f"{out} exists and is not a synthetic dataset",
            where=str(out),
            fix="pass a new or empty folder (an earlier `portrait dataset synth` folder is replaced)",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for sub in {
            "segmentation": ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"),
            "matting": ("images", "alpha"),
            "depth": ("images", "depth"),
        }[task]:
            (staging / sub).mkdir(parents=True)
        names = [f"synth_{i:06d}" for i in range(n)]
        chunk = max(1, min(50, n // (4 * max(1, workers or 2)) or 1))
        shards = [
            (str(staging), task, seed, tuple(size), list(range(a, min(n, a + chunk)))) for a in range(0, n, chunk)
        ]
        map_shards(
            _synth_shard,
            shards,
            engine=engine,
            address=address,
            workers=workers,
            progress=progress,
            unit="scenes",
            sizes=[len(s[4]) for s in shards],
        )
        if task == "segmentation":
            (staging / "ImageSets/Segmentation/val.txt").write_text("\n".join(names) + "\n")
        meta = {
            "task": task,
            "n": n,
            "seed": seed,
            "size": list(size),
            "generator": "toolchain.scenes.generate_scene",
            "kinds": "person for even i, cat for odd i; scene i has seed seed + i",
            "truth": {
                "segmentation": "VOC class ids (person 15, cat 8, else 0) where alpha >= 0.5",
                "matting": "alpha coverage, 8-bit PNG",
                "depth": "z-depth, 16-bit PNG in millimetres",
            }[task],
        }
        (staging / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return open_dataset(out)


def _synth_shard(shard) -> int:
    """Write scenes for the indices of one shard (runs in any worker; files only, no shared state)."""

    root, task, seed, size, indices = shard
    root = Path(root)
    pal = voc_palette().ravel().tolist()
    for i in indices:
        kind = ("person", "cat")[i % 2]
        s = generate_scene(seed=seed + i, kind=kind, size=size)
        name = f"synth_{i:06d}"
        bgr = np.ascontiguousarray(s.rgb[..., ::-1])
        if task == "segmentation":
            cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            labels = np.where(s.alpha >= 0.5, SYNTH_CLASS_IDS[kind], 0).astype(np.uint8)
            im = Image.fromarray(labels, mode="P")
            im.putpalette(pal)
            im.save(root / "SegmentationClass" / f"{name}.png", optimize=False)
        elif task == "matting":
            cv2.imwrite(str(root / "images" / f"{name}.png"), bgr)
            cv2.imwrite(str(root / "alpha" / f"{name}.png"), np.rint(s.alpha * 255.0).astype(np.uint8))
        else:
            cv2.imwrite(str(root / "images" / f"{name}.png"), bgr)
            mm = np.clip(np.rint(s.depth_m.astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
            cv2.imwrite(str(root / "depth" / f"{name}.png"), mm)
    return len(indices)
