#!/usr/bin/env python
"""Filter images as pictures: for each recipe, what its saved tiles reach and how they look.

    python bench/quality.py [--model PATH] [--preprocess caffe|none|tf|torch]
                            [--layers block2_conv2,block3_conv1] [--filters 16] [--size 128]
                            [--recipes default,lucid@time,old] [--sheets docs/quality]

Each recipe renders the same filters of each layer in one batch, its programs compiled
outside the timing. *s/filter* is the recipe's steps times its cost per step, the fastest of
three timed 8-step runs, taken in turns with the other recipes' (robust to a busy spell on a shared machine); *(timed)* is the
render's own wall time. Every saved 8-bit tile is scored by
the tests' own paths, independent of the renderer:

* *robust*: the filter's mean pre-activation over 16 fixed jitters, scales and rotations
  (``tests/tile_scores.py``), median over the filters;
* *faithful*: the share of live filters (peak above 0 on the tile or on some photo) whose
  tile's robust activation beats the strongest sample photo's, the photos resized to the
  tile's size and scored the same way;
* *clip*, *corner*, *checker*, *HF*: ``tests/picture_scores.py``, medians; the sample photos
  at the same size are the reference row.

Recipes: ``default`` (the preset for this machine), ``old`` (the CPU default before the
contrast bound: Adam 0.2, 1/f^1.5, 64 full-size steps, unbounded), ``lucid`` (Lucid's
recipe: Adam 0.05, 1/f, Lucid's padded transforms, unbounded; in the preset's precision, so
bf16 where the default is, unless ``:precision=float32`` says otherwise) at ``lucid@N`` steps or at
``lucid@time``, as many steps as fit in the first recipe's time (measured per step in this run),
and any ``name:key=value;key=value`` over RenderSettings fields (``lr``, ``decay``, ``momentum``,
``steps``, ``contrast`` (``none`` for unbounded), ``transforms``, ``param``, and the kinds'
``coarse_contrast``, ``coarse_decay``, ``depthwise_lr``, ``depthwise_decay``, ``depthwise_momentum``,
which win over ``contrast``, ``decay``, ``lr`` and ``momentum`` on their layers unless set to ``none``). Absolute times
on shared machines are noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from common import HED_VGG16, SHARED, machine  # first: it puts the repository on the path

SAMPLES = SHARED / "samples"
FIELDS = {"lr": "learning_rate", "decay": "decay", "steps": "steps", "contrast": "contrast",
          "transforms": "transforms", "param": "parameterization", "scales": "scales",
          "precision": "precision", "coarse_contrast": "coarse_contrast", "coarse_decay": "coarse_decay",
          "depthwise_lr": "depthwise_lr", "depthwise_decay": "depthwise_decay", "momentum": "momentum",
          "depthwise_momentum": "depthwise_momentum"}
# The kinds' own settings (RenderSettings.KINDS) are off in both: every layer takes the recipe's.
OLD = {"learning_rate": 0.2, "decay": 1.5, "momentum": 0.9, "steps": 64, "contrast": None, "transforms": "standard",
       "parameterization": "fourier"}
LUCID = {"learning_rate": 0.05, "decay": 1.0, "momentum": 0.9, "contrast": None, "transforms": "lucid",
         "parameterization": "fourier"}


def _every_layer_alike(settings: dict) -> dict:
    from gallery.config import RenderSettings

    return {**settings, **dict.fromkeys(RenderSettings.KINDS)}


def recipe(spec: str, base: dict) -> tuple[str, dict]:
    """``(label, settings)`` of a recipe spec; ``steps`` of ``None`` means "the first recipe's time"."""
    if spec == "default":
        return spec, dict(base)
    if spec == "old":
        return spec, _every_layer_alike({**base, **OLD})
    name, _, body = spec.partition(":")
    settings = dict(base)
    if name.startswith("lucid@"):  # Lucid's recipe, then any overrides (``lucid@time:precision=bfloat16``)
        steps = name.split("@", 1)[1]
        settings = _every_layer_alike({**base, **LUCID, "steps": None if steps == "time" else int(steps)})
    for item in filter(None, body.split(";")):
        key, _, value = item.partition("=")
        field = FIELDS[key.strip()]
        if field in ("transforms", "parameterization", "precision"):
            settings[field] = value
        elif field == "scales":
            settings[field] = tuple(float(v) for v in value.split("/"))
        elif field == "steps":
            settings[field] = int(value)
        else:
            settings[field] = None if value == "none" else float(value)
    return (spec if name.startswith("lucid@") else name), settings


class Renderer:
    """One recipe's renderer for one batch of filters, its programs compiled on construction."""

    def __init__(self, model, layer, preprocess, settings, filters):
        from gallery.config import RenderSettings
        from gallery.render.optimize import FilterRenderer
        from gallery.render.schedule import CHUNK

        self.filters = filters
        self.make = lambda steps: FilterRenderer(  # noqa: E731
            model, layer, RenderSettings(**{**settings, "batch": len(filters), "steps": steps}), preprocess)
        self.probe = self.make(CHUNK)
        self.probe.images(filters)  # traces the chunk loop and the scoring outside any timing

    def chunk_seconds(self) -> float:
        """Seconds of one compiled chunk of steps of the whole batch."""
        start = time.perf_counter()
        self.probe.images(self.filters)
        return time.perf_counter() - start

    def render(self, steps: int):
        """``(tiles, seconds)`` at ``steps`` (a multiple of 8 reuses the compiled loop)."""
        renderer = self.make(steps)
        renderer._loops = self.probe._loops
        start = time.perf_counter()
        tiles = renderer.images(self.filters)
        return tiles, time.perf_counter() - start


def sheet(rows: list[tuple[str, np.ndarray]], path: Path, columns: int = 4) -> None:
    """A contact sheet: one labelled row of tiles per recipe, at their own pixels."""
    from PIL import Image, ImageDraw

    size = rows[0][1].shape[1]
    label = 14
    image = Image.new("RGB", (columns * size, len(rows) * (size + label)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r, (name, tiles) in enumerate(rows):
        top = r * (size + label)
        draw.text((2, top + 1), name, fill=(0, 0, 0))
        for c, tile in enumerate(tiles[:columns]):
            image.paste(Image.fromarray(tile), (c * size, top + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=HED_VGG16)
    parser.add_argument("--preprocess", default=None, help="default: caffe for VGG16-HED, none otherwise")
    parser.add_argument("--layers", default="block2_conv2,block3_conv1,block4_conv3,block5_conv3")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--first", type=int, default=0, help="the first filter index")
    parser.add_argument("--size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="whose preset settings to use (default: this machine's); 'gpu' on a CPU runs a GPU "
                             "preset's pictures slowly, for their figures, not their speed")
    parser.add_argument("--recipes", default="default,lucid@time,old")
    parser.add_argument("--sheets", type=Path, default=None, help="write a contact sheet per layer here")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"model {args.model} not found (the offline fixtures live in ../shared/models)")

    import keras

    from gallery import load_model, presets
    from gallery.model import grad, precision
    from tests import picture_scores
    from tests.tile_scores import Scorer
    from gallery.render.schedule import CHUNK

    preprocess = args.preprocess or ("caffe" if "vgg16" in args.model.name else "none")
    device = grad.accelerator() if args.device is None else (None if args.device == "cpu" else "gpu")
    model = load_model(str(args.model))
    given = {"size": args.size, "steps": args.steps}
    # As a build chooses: a model with depthwise convolutions keeps float32 on an AMX CPU (bf16 is slower there).
    base = precision.settings_for(model, *(presets.render_part(presets.resolve(args.preset, device, given, bf16))
                                           for bf16 in (None, False)))
    base.pop("batch", None)
    filters = list(range(args.first, args.first + args.filters))
    photos = picture_scores.photos_at(sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")),
                                      base["size"])
    print(f"machine: {machine()}; keras {keras.__version__}, backend {keras.backend.backend()}; "
          f"{args.model.name}, filters {filters[0]}-{filters[-1]}; preset {args.preset} for "
          f"{'a GPU' if device else 'a CPU'}: {base}")
    figures = picture_scores.figures(photos)
    print(f"natural photos ({len(photos)} samples at {base['size']} px): "
          + ", ".join(f"{k} {np.median(v):.3f}" for k, v in figures.items()))
    recipes = [recipe(spec, base) for spec in args.recipes.split(",")]
    for layer in args.layers.split(","):
        scorer = Scorer(model, layer, caffe=preprocess == "caffe")
        photo_robust = np.stack([scorer.robust(photos, [f] * len(photos)) for f in filters])  # (filters, photos)
        photo_peak = np.stack([scorer.peak(photos, [f] * len(photos)) for f in filters]).max(axis=1)
        print(f"\n{layer}")
        print(f"{'recipe':<22} {'steps':>5} {'s/filter':>8} {'(timed)':>8} {'robust':>8} {'faithful':>8} "
              f"{'clip':>6} {'corner':>6} {'checker':>7} {'HF':>5}")
        results = []
        renderers = [Renderer(model, layer, preprocess, settings, filters) for _, settings in recipes]
        # Each recipe's cost per step: the fastest of three chunks, taken in turns (one of each
        # recipe per round), so a busy spell on a shared machine falls on every recipe alike.
        rounds = [[r.chunk_seconds() for r in renderers] for _ in range(3)]
        per_step = [min(times) / CHUNK for times in zip(*rounds)]
        for (name, settings), renderer, step in zip(recipes, renderers, per_step):
            steps = settings["steps"]
            if steps is None:  # the first recipe's time, at this recipe's measured cost per step
                steps = max(8, int(round(recipes[0][1]["steps"] * per_step[0] / step / 8)) * 8)
            tiles, seconds = renderer.render(steps)
            robust = scorer.robust(tiles, filters)
            live = (scorer.peak(tiles, filters) > 0) | (photo_peak > 0)
            faithful = float((robust > photo_robust.max(axis=1))[live].mean()) if live.any() else float("nan")
            fig = {k: float(np.median(v)) for k, v in picture_scores.figures(tiles).items()}
            label = name.replace("@time", f"@{steps}")
            results.append((label, tiles))
            print(f"{label:<22} {steps:>5} {step * steps / len(filters):>8.2f} {seconds / len(filters):>8.2f} "
                  f"{np.median(robust):>8.1f} {faithful:>8.2f} {fig['clip']:>6.3f} {fig['corner']:>6.3f} "
                  f"{fig['checker']:>7.3f} {fig['HF']:>5.2f}", flush=True)
        print(f"{'photos (strongest)':<22} {'':>5} {'':>8} {'':>8} {np.median(photo_robust.max(axis=1)):>8.1f}")
        if args.sheets:
            path = args.sheets / f"{args.model.stem}_{layer}.png"
            sheet(results, path)
            print(f"sheet: {path}")


if __name__ == "__main__":
    main()
