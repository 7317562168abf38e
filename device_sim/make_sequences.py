"""Generate the sample ToF sequences committed under device_sim/sequences/.

Run: python -m device_sim.make_sequences [--out DIR] [--frames N]
Each sequence is a synthetic scene (toolchain.scenes) over time seen by a simulated ToF sensor
(toolchain.depth.tof). Per frame: RGB (JPEG), DEPTH16 (raw, padded row stride), ground-truth alpha
(8-bit PNG), ground-truth z-depth (16-bit PNG, mm) and, in meta.json, the class, timestamps (ns) and
focus distance; meta.json also holds the sensor profile, intrinsics and ToF -> RGB extrinsics.
The ToF frame is simulated from the scene rendered at SIM_SIZE; RGB and truth are stored at RGB_SIZE
(the same scene, rendered smaller), so the ToF sees finer detail than the stored RGB, as on a phone.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from toolchain.depth.camera import Intrinsics
from toolchain.depth.depth16 import write_depth16
from toolchain.depth.tof import get_profile, simulate_tof_frame
from toolchain.scenes import generate_scene

OUT_DIR = Path(__file__).resolve().parent / "sequences"
RGB_SIZE = (360, 480)  # (height, width) stored
SIM_SIZE = (480, 640)  # rendered for the ToF simulation
SEQUENCES = {
    # name: (scene kind, seed, ToF profile, DEPTH16 row padding in bytes)
    "person_walk": ("person", 4, "tof_320x240", 0),
    "cat_turn": ("cat", 7, "tof_240x180", 32),
}
JPEG_QUALITY = 88
PNG = [cv2.IMWRITE_PNG_COMPRESSION, 9]
FORMAT_VERSION = 1


def make_sequence(name: str, out_dir: Path = OUT_DIR, frames: int = 30) -> Path:
    kind, seed, profile_name, pad = SEQUENCES[name]
    prof = get_profile(profile_name)
    d = out_dir / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    stride = 2 * prof.width + pad
    t0_ns = 1_000_000_000
    meta_frames = []
    for t in range(frames):
        sim = generate_scene(seed, kind, size=SIM_SIZE, t=t)
        tof = simulate_tof_frame(sim, prof, seed=seed, frame_index=t, t0_ns=t0_ns)
        s = generate_scene(seed, kind, size=RGB_SIZE, t=t)
        stem = f"{t:04d}"
        cv2.imwrite(
            str(d / f"rgb_{stem}.jpg"), cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        write_depth16(d / f"tof_{stem}.depth16", tof.depth16, stride_bytes=stride)
        cv2.imwrite(str(d / f"alpha_{stem}.png"), np.rint(s.alpha * 255).astype(np.uint8), PNG)
        cv2.imwrite(str(d / f"depth_{stem}.png"), np.clip(np.rint(s.depth_m * 1000), 0, 65535).astype(np.uint16), PNG)
        meta_frames.append(
            {
                "index": t,
                "label": s.label,
                "subject_depth_m": round(s.subject_depth_m, 4),
                "rgb_timestamp_ns": t0_ns + t * prof.frame_period_ns,
                "tof_timestamp_ns": tof.timestamp_ns,
                "rgb": f"rgb_{stem}.jpg",
                "depth16": f"tof_{stem}.depth16",
                "alpha": f"alpha_{stem}.png",
                "depth_gt": f"depth_{stem}.png",
            }
        )
    rgb_cam = Intrinsics.from_matrix(s.K, RGB_SIZE[1], RGB_SIZE[0])
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "kind": kind,
        "seed": seed,
        "generator": "python -m device_sim.make_sequences",
        "units": {
            "depth16": "DEPTH16 words, range = z-depth mm in low 13 bits",
            "depth_gt": "uint16 PNG, z-depth in the RGB camera, mm",
            "alpha": "uint8 PNG, 255 = 1.0",
            "timestamps": "ns",
            "extrinsics": "X_rgb = R @ X_tof + t_m (metres)",
        },
        "rgb": {"width": RGB_SIZE[1], "height": RGB_SIZE[0], "intrinsics": rgb_cam.to_dict(), "fps": prof.fps},
        "tof": {
            "profile": prof.to_dict(),
            "width": prof.width,
            "height": prof.height,
            "stride_bytes": stride,
            "intrinsics": prof.intrinsics.to_dict(),
        },
        "extrinsics_tof_to_rgb": prof.extrinsics.to_dict(),
        "frames": meta_frames,
    }
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("names", nargs="*", default=list(SEQUENCES))
    a = ap.parse_args(argv)
    for n in a.names:
        d = make_sequence(n, a.out, a.frames)
        size = sum(p.stat().st_size for p in d.iterdir())
        print(f"{d}: {a.frames} frames, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
