#!/usr/bin/env python
"""First layers, linear in the pixels, against issue 19's acceptance figures.

    python bench/first_layers.py [--filters 16] [--size 128] [--steps N] [--objective gallery]
                                  [--learning-rate X] [--decay X] [--sheet PATH]

For VGG16-HED block1_conv1, EfficientNet-Lite0's stem_conv and MobileNetV2's Conv1 (the
offline fixtures in ``../shared/models``), renders the filters with the CPU default preset
and prints, per layer, from the saved 8-bit tiles (scored by ``tests/tile_scores.py``,
judged by ``tests/first_layer_scores.py``):

* *faithful*: the share of live filters whose tile's peak beats the strongest sample
  photo's (``../shared/samples`` at the model's 224-pixel input); pruned filters (weights
  under 1e-5 of the layer's strongest, :func:`gallery.render.exact.silent`) are not live;
* *same tile*: pairs of filters whose kernels differ (cosine < 0.9) but whose tiles are
  near-identical (mean absolute difference under 4 grey levels at the best shift);
* the medians of clip, corner and checker, and the seconds per filter.

``--objective`` picks what the first layer maximizes: ``gallery`` (the mean square of the
map after a ReLU, :func:`gallery.render.objectives.rectified`), ``relu-mean`` (the mean
after a ReLU), ``cubed`` (the mean cube after a ReLU), or ``mean`` (the plain mean, whose
exact optimum the gallery used to show). ``--learning-rate`` and ``--decay`` override the
preset's. ``--sheet`` saves the tiles, a row per layer, to look at.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import SHARED, machine  # first: it puts the repository on the path

FIXTURES = [("vgg16_hed_notop.keras", "block1_conv1", "caffe"),
            ("efficientnet_lite0_imagenet.keras", "stem_conv", "none"),
            ("mobilenet_v2_imagenet.keras", "Conv1", "none")]


def objectives():
    from keras import ops

    from gallery.render import objectives as o

    return {"gallery": o.rectified, "relu-mean": lambda z: ops.mean(ops.relu(z), axis=(1, 2)), "mean": o.channel,
            "cubed": lambda z: ops.mean(ops.relu(z) ** 3, axis=(1, 2))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--decay", type=float, default=None)
    parser.add_argument("--contrast", type=float, default=None, help="the contrast bound (0: unbounded)")
    parser.add_argument("--sheet", type=str, default=None)
    parser.add_argument("--objective", choices=("gallery", "relu-mean", "mean", "cubed"), default="gallery")
    args = parser.parse_args(argv)

    import keras

    from gallery import presets
    from gallery.config import RenderSettings
    from gallery.render import exact, objectives as o
    from gallery.render.optimize import FilterRenderer
    from gallery.render.schedule import spans
    from tests import first_layer_scores as fl
    from tests.tile_scores import Scorer

    given = {"size": args.size, "steps": args.steps, "learning_rate": args.learning_rate, "decay": args.decay}
    if args.contrast is not None:
        given["contrast"] = args.contrast or None
    chosen = presets.resolve("default", None, given)
    chosen = presets.render_part(chosen)
    settings = RenderSettings(**chosen)
    chosen = objectives()[args.objective]
    o.LINEAR_VARIANTS["channel"] = o.Variant("channel", chosen)
    print(f"# {machine()}; objective {args.objective}; {settings}")
    print("| layer | faithful (live) | same tile (pairs) | clip | corner | checker | s/filter |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for name, layer, preprocess in FIXTURES:
        model = keras.saving.load_model(SHARED / "models" / name)
        kernel = model.get_layer(layer).kernel.numpy()
        filters = list(range(min(args.filters, kernel.shape[-1])))
        start = time.perf_counter()
        renderer = FilterRenderer(model, layer, settings, preprocess)
        tiles = np.concatenate([renderer.images(filters[s:s + n]) for s, n in spans(len(filters), settings.batch)])
        seconds = (time.perf_counter() - start) / len(filters)
        scorer = Scorer(model, layer, caffe=preprocess == "caffe")
        tile_peaks = np.maximum(scorer.peak(tiles, filters), 0)
        photos = fl.photos_at(SHARED / "samples", 224)
        photo_peaks = np.maximum(np.stack([scorer.peak(np.repeat(p[None], len(filters), 0), filters)
                                           for p in photos]), 0)
        alive = fl.live(tile_peaks, photo_peaks) & ~exact.silent(model.get_layer(layer), filters)
        good = fl.faithful(tile_peaks, photo_peaks)
        pairs = fl.near_identical_pairs(tiles, kernel, filters, alive)
        print(f"| {layer} | {good[alive].sum()}/{alive.sum()} | {len(pairs)} {[(i, j) for i, j, *_ in pairs]} "
              f"| {np.median(fl.clip(tiles)):.3f} | {np.median(fl.corner(tiles)):.4f} "
              f"| {np.median(fl.checker(tiles)):.4f} | {seconds:.2f} |", flush=True)
        for i, f in enumerate(filters):
            if alive[i] and not good[i]:
                print(f"    #{f} is not faithful: tile peak {tile_peaks[i]:.4g}, "
                      f"best photo {photo_peaks[:, i].max():.4g}")
        rows.append(np.concatenate(list(tiles), axis=1))
    if args.sheet:
        from PIL import Image

        Image.fromarray(np.concatenate(rows)).save(args.sheet)


if __name__ == "__main__":
    main()
