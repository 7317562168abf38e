"""Compare pymatting's alpha solvers on one photo's trimap: why the render stage uses the closed form.

    .venv/bin/python -m experiments.matting_methods [PHOTO] [SEGMENTATION_BUNDLE]
    (defaults: ../shared/photos/cat_01.jpg and the exported DeepLab bundle)

Measured (cat_01, DeepLab trimap, 810x540 grid, 69k unknown pixels): our band-restricted closed form
1.8 s CPU, band SAD 2.37, band accuracy 0.978; pymatting's KNN 14.4 s, 4.75, 0.948; its large-kernel
solver 25.2 s, 3.05, 0.980.
Same trimap (toolchain.render.matting.make_trimap) on the stage's working grid for each: our
band-restricted closed form, pymatting's estimate_alpha_knn and estimate_alpha_lkm. Prints process CPU
seconds and SAD / accuracy against the reference alpha inside the unknown band.
"""

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from pymatting import estimate_alpha_knn, estimate_alpha_lkm

from toolchain import paths
from toolchain.images import load_rgb
from toolchain.render import matting
from toolchain.render.model_output import decode_probability
from toolchain.render.photo import run_segmentation
from toolchain.render.plan import make_plan, pad_to_plan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    photo = Path(argv[0] if argv else "../shared/photos/cat_01.jpg")
    bundle = Path(argv[1] if len(argv) > 1 else paths.out_dir() / "deeplabv3_mnv2_pascal_257")
    img = load_rgb(photo)
    ref = (
        cv2.imread(str(photo.with_name(photo.stem + "_alpha_pred.png")), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    )
    low, spec = run_segmentation(bundle, img)
    plan = make_plan(*img.shape[:2], (257, 257), 10)
    work = cv2.resize(pad_to_plan(img, plan), (plan.work_w, plan.work_h), interpolation=cv2.INTER_AREA)
    ref_w = cv2.resize(pad_to_plan(ref, plan), (plan.work_w, plan.work_h), interpolation=cv2.INTER_AREA)
    p = cv2.resize(decode_probability(low, spec), (plan.work_w, plan.work_h))
    tri = matting.make_trimap(p, matting.band_radius(plan))
    unk = tri == 0.5
    print(f"{photo.name}: working grid {work.shape[1]}x{work.shape[0]}, {int(unk.sum())} unknown px")
    im = work.astype(np.float64) / 255
    for name, fn in (
        ("closed form (ours, band only)", lambda: matting.solve_alpha(work, tri, p)),
        ("pymatting knn", lambda: estimate_alpha_knn(im, tri.astype(np.float64))),
        ("pymatting lkm", lambda: estimate_alpha_lkm(im, tri.astype(np.float64))),
    ):
        t = time.process_time()
        a = fn()
        dt = time.process_time() - t
        print(
            f"{name:30} cpu {dt:6.2f} s | band SAD {np.abs(a - ref_w)[unk].sum() / 1000:6.2f} | "
            f"band accuracy {((a > 0.5) == (ref_w > 0.5))[unk].mean():.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
