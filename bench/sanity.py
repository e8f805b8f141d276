#!/usr/bin/env python
"""What the deletion and insertion curves and the randomization check cost per photo, and
what the check finds, on a real classifier:

    python bench/sanity.py [--model PATH] [--methods gradcam,saliency,guided-gradcam] [--levels 3]
                           [--classes 5] [--points 10] [--photos 6]

The sample photos (../shared/samples) go in one batch, as a photo unit holds them. Printed:

  * seconds per photo of today's 30% figures (:class:`Faithfulness`), of the curves of
    ``--classes`` maps (:class:`Curves`, ``--points`` steps), and of their random-order
    baseline, each after an untimed warm-up;
  * per method: the seconds per photo of its maps (``--classes`` classes), of the check
    (the top class's map under ``--levels`` randomized copies), the one-off cost of
    compiling its passes on the copies (the copies themselves are made once, timed apart),
    and the check's figures: the mean rank
    correlation and SSIM at each level and how many photos fail (both ``≥ FAIL_AT`` at the deepest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import SHARED, clock, machine  # first: it puts the repository on the path

import keras  # noqa: E402
import numpy as np  # noqa: E402

from gallery import load_model  # noqa: E402
from gallery.photos.activations import Activations  # noqa: E402
from gallery.photos.explain import explainer  # noqa: E402
from gallery.photos.faithfulness import Curves, Faithfulness  # noqa: E402
from gallery.photos.sanity import FAIL_AT, Copies, Randomization, fails  # noqa: E402
from gallery.photos.sources import load_photos  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "mobilenet_v2_imagenet.keras"))
    parser.add_argument("--preprocess", default="none")
    parser.add_argument("--methods", default="gradcam,saliency,guided-gradcam")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--photos", type=int, default=6)
    args = parser.parse_args()

    model = load_model(args.model)
    photos = [p.pixels for p in load_photos([SHARED / "samples"])][:args.photos]
    n = len(photos)
    probs = Activations(model, [], args.preprocess).predictions_batch(photos)
    classes = [[int(c) for c in np.argsort(-p)[:args.classes]] for p in probs]
    top = [c[0] for c in classes]
    print(f"machine: {machine()}; Keras {keras.__version__} ({keras.backend.backend()}); model "
          f"{Path(args.model).name}; {n} photos in one batch, top {args.classes} classes, {args.points} curve "
          f"steps, {args.levels} levels")
    flat = [np.random.default_rng(0).random((args.classes, 8, 8)).astype("float32")] * n
    judge, curves = Faithfulness(model, args.preprocess), Curves(model, args.preprocess, points=args.points)
    judge(photos[:1], classes[:1], flat[:1])
    curves(photos[:1], classes[:1], flat[:1])  # warm-up: tracing
    _, point_s = clock(lambda: judge(photos, classes, flat))
    _, curve_s = clock(lambda: curves(photos, classes, flat))
    _, random_s = clock(lambda: curves(photos, classes))
    print(f"per photo: 30% figures {point_s / n:.2f} s; curves of {args.classes} maps {curve_s / n:.2f} s "
          f"({curve_s / point_s:.1f}x); random-order baseline {random_s / n:.2f} s")
    copies, copy_s = clock(lambda: Copies(model, args.levels))
    print(f"the {args.levels} randomized copies, made once for every method: {copy_s:.1f} s")
    print(f"{'method':<16}{'maps s':>8}{'check s':>9}{'setup s':>9}  {'rank correlation by level':<28}"
          f"{'SSIM by level':<22}fail")
    for method in args.methods.split(","):
        engine = explainer(model, None, method, args.preprocess)
        engine.explain_batch(photos[:1], classes[:1])  # warm-up
        (maps, _), maps_s = clock(lambda: engine.explain_batch(photos, classes))
        check, setup_s = clock(lambda: Randomization(model, None, method, args.preprocess, copies=copies))
        trained = [m[0] for m in maps]
        _, warm_s = clock(lambda: check(photos[:1], top[:1], trained[:1]))  # tracing the copies' passes
        found, check_s = clock(lambda: check(photos, top, trained))
        rho = np.mean([f["spearman"] for _, f in found], axis=0)
        ssim = np.mean([f["ssim"] for _, f in found], axis=0)
        failed = sum(fails(f) for _, f in found)
        print(f"{method:<16}{maps_s / n:>8.2f}{check_s / n:>9.2f}{setup_s + warm_s:>9.1f}  "
              f"{' '.join(f'{r:+.2f}' for r in rho):<28}{' '.join(f'{s:.2f}' for s in ssim):<22}{failed}/{n}")
    print(f"layers re-initialized, top first: {', '.join(check.layers)}; a map fails at rank correlation and SSIM both ≥ {FAIL_AT}")


if __name__ == "__main__":
    main()
