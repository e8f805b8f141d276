#!/usr/bin/env python
"""Photos per second for the work done on sample photos, per CAM method:

    python bench/photos.py [--model PATH] [--photos 16] [--classes 5] [--methods gradcam,gradcam++,scorecam]
                           [--methods saliency,smoothgrad,guided-gradcam]

Every figure is measured in this run on the same photos (../shared/samples, repeated),
after one warm-up batch, so ratios are comparable on a noisy shared machine:

  * forward: predictions for a batch (the baseline, 1.00x);
  * features: every conv layer's maps for a batch, as the build computes them;
  * each CAM method (or pixel attribution) for the top ``--classes`` classes, batched as
    the build does;
  * for Grad-CAM, the same maps one photo at a time (the unbatched baseline);
  * Grad-CAM's cost in forward-pass units, to check "about one forward plus one
    backward pass per photo and class".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import SHARED, machine  # first: it puts the repository on the path

import keras  # noqa: E402
import numpy as np  # noqa: E402

from gallery.model import graph
from gallery import load_model
from gallery.photos.activations import Activations  # noqa: E402
from gallery.photos.explain import explainer  # noqa: E402
from gallery.imaging import resize  # noqa: E402
from gallery.orchestrate.units import PHOTO_BATCH  # noqa: E402
from gallery.photos.sources import load_photos  # noqa: E402



def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up: tracing and compilation are not what is measured
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "efficientnet_lite0_imagenet.keras"))
    parser.add_argument("--preprocess", default="none")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--methods", default="gradcam,gradcam++,scorecam")
    parser.add_argument("--scorecam-photos", type=int, default=2,
                        help="Score-CAM and SmoothGrad are slow on CPU: time fewer photos")
    args = parser.parse_args()

    model = load_model(args.model)
    samples = [resize(p.pixels, 224, 224) for p in load_photos([SHARED / "samples"])]
    photos = [samples[i % len(samples)] for i in range(args.photos)]
    batches = [photos[i:i + PHOTO_BATCH] for i in range(0, len(photos), PHOTO_BATCH)]
    print(f"machine: {machine()}; Keras {keras.__version__} "
          f"({keras.backend.backend()}); model {Path(args.model).name}; {len(photos)} photos at 224 px, "
          f"batches of {PHOTO_BATCH}, {args.classes} classes per photo")

    acts = Activations(model, graph.conv_layers(model), args.preprocess)
    heads = Activations(model, [], args.preprocess)
    rows = []
    forward = timed(lambda: [heads.predictions_batch(b) for b in batches])
    rows.append(("forward (predictions)", len(photos) / forward))
    features = timed(lambda: [acts.feature_maps_batch(b) for b in batches])
    rows.append((f"features ({len(acts.paths)} conv layers)", len(photos) / features))
    classes = [list(range(args.classes))] * PHOTO_BATCH
    for method in args.methods.split(","):
        engine = explainer(model, None, method, args.preprocess)
        subset = photos[:args.scorecam_photos] if method in ("scorecam", "smoothgrad") else photos
        groups = [subset[i:i + PHOTO_BATCH] for i in range(0, len(subset), PHOTO_BATCH)]
        seconds = timed(lambda: [engine.explain_batch(g, classes[:len(g)]) for g in groups])
        rows.append((f"{method} (batched, {args.classes} classes)", len(subset) / seconds))
        if method == "gradcam":
            single = timed(lambda: [engine.explain(p, classes[0]) for p in photos])
            rows.append(("gradcam (one photo at a time)", len(photos) / single))
            units = seconds / forward / args.classes
            print(f"Grad-CAM costs {units:.2f} batched forward passes per photo and class "
                  f"(one forward + one backward is about 3)")
    base = rows[0][1]
    print(f"{'stage':<40}{'photos/s':>10}{'vs forward':>12}")
    for name, rate in rows:
        print(f"{name:<40}{rate:>10.2f}{rate / base:>11.2f}x")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
