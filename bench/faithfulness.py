#!/usr/bin/env python
"""How faithful each CAM method's maps are on the sample photos, and what judging them costs:

    python bench/faithfulness.py [--model PATH] [--methods gradcam,layercam,scorecam] [--classes 5]

For every sample photo (../shared/samples, at their own sizes, in one batch as a photo
unit holds them) and its top ``--classes`` classes, each method's maps are made as the
build makes them (``CamEngine.explain_batch``), then judged as the build judges them
(:class:`gallery.photos.faithfulness.Faithfulness`). Printed per method:

  * the mean share of the class probability the top 30% of pixels keep, and the bottom
    30%, each share counted at most 100% (as the photo pages' per-method line), over
    all classes, and over the top class alone (no cap);
  * the seconds of the CAM pass and of the faithfulness pass, each after an untimed
    warm-up, and their ratio: what the figure adds to that method's share of a unit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import SHARED, clock, machine  # first: it puts the repository on the path

import keras  # noqa: E402
import numpy as np  # noqa: E402

from gallery import load_model  # noqa: E402
from gallery.photos.activations import Activations  # noqa: E402
from gallery.photos.cams import CamEngine  # noqa: E402
from gallery.photos.faithfulness import BOTTOM, FULL, TOP, Faithfulness  # noqa: E402
from gallery.photos.sources import load_photos  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "efficientnet_lite0_imagenet.keras"))
    parser.add_argument("--preprocess", default="none")
    parser.add_argument("--methods", default="gradcam,layercam,scorecam")
    parser.add_argument("--classes", type=int, default=5)
    args = parser.parse_args()

    model = load_model(args.model)
    photos = [p.pixels for p in load_photos([SHARED / "samples"])]
    probs = Activations(model, [], args.preprocess).predictions_batch(photos)
    classes = [list(np.argsort(-p)[:args.classes]) for p in probs]
    print(f"machine: {machine()}; Keras {keras.__version__} ({keras.backend.backend()}); model "
          f"{Path(args.model).name}; {len(photos)} photos in one batch, top {args.classes} classes each")
    judge = Faithfulness(model, args.preprocess)
    judge(photos[:1], [classes[0]], [np.ones((args.classes, 8, 8), "float32")])  # warm-up: tracing
    print(f"{'method':<12}{'top 30%':>9}{'bottom 30%':>12}{'top class: top':>16}{'bottom':>8}"
          f"{'CAM s':>9}{'judge s':>9}{'ratio':>7}")
    spent = {"cam": 0.0, "judge": 0.0}
    for method in args.methods.split(","):
        engine = CamEngine(model, None, method, args.preprocess)
        engine.explain_batch(photos[:1], classes[:1])  # warm-up
        (maps, _), cam_s = clock(lambda: engine.explain_batch(photos, classes))
        figures, judge_s = clock(lambda: np.stack(judge(photos, classes, maps)))  # (photos, classes, 3)
        spent["cam"] += cam_s
        spent["judge"] += judge_s
        top, bottom = (figures[..., side] / figures[..., FULL] for side in (TOP, BOTTOM))
        print(f"{method:<12}{np.minimum(top, 1).mean():>9.0%}{np.minimum(bottom, 1).mean():>12.0%}"
              f"{top[:, 0].mean():>16.0%}{bottom[:, 0].mean():>8.0%}{cam_s:>9.2f}{judge_s:>9.2f}"
              f"{judge_s / cam_s:>6.2f}x")
    print(f"all methods: the faithfulness passes take {spent['judge']:.2f} s against {spent['cam']:.2f} s of CAM "
          f"passes ({spent['judge'] / spent['cam']:.2f}x)")


if __name__ == "__main__":
    main()
