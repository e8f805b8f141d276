#!/usr/bin/env python
"""Caricatures (gallery.render.caricature) on real weights: their cost, their match, and a sheet to look at.

    python bench/caricatures.py [--model vgg16_hed_notop.keras] [--layers a,b,c] [--photos cat.png,coffee.png]
                                [--size N] [--steps N] [--sheet PATH]

Renders one caricature per sample photo (``../shared/samples``) at each layer (by default
the build's own choice, :func:`gallery.orchestrate.pipeline.caricature_layers`, over every conv
layer) with the default preset for this machine's device, as a build does (a photo unit's
photos in one batch, padded to 8). Prints per layer the seconds per photo of a full batch,
and the cosine similarity of the layer's responses to each caricature and its photo beside
that of the response to the next photo (another scene) and the photo: the issue's check,
which the first must beat.
``--sheet`` saves a contact sheet: a row per photo, the photo then its caricatures.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from common import SHARED, machine  # first: it puts the repository on the path

PREPROCESS = {"vgg16_hed_notop.keras": "caffe"}  # the others rescale inside the model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16_hed_notop.keras")
    parser.add_argument("--layers", help="comma-separated (default: the build's default choice)")
    parser.add_argument("--photos", default="cat.png,coffee.png,rocket.jpg")
    parser.add_argument("--size", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--sheet")
    args = parser.parse_args(argv)

    import keras
    from PIL import Image

    from gallery import imaging, presets
    from gallery.orchestrate.pipeline import caricature_layers
    from gallery.config import BuildConfig, RenderSettings
    from gallery.model import grad, graph
    from gallery.photos.activations import ROWS
    from gallery.render.caricature import CaricatureRenderer

    model = keras.saving.load_model(SHARED / "models" / args.model)
    preprocess = PREPROCESS.get(args.model, "none")
    chosen = presets.resolve("default", grad.accelerator(), {"size": args.size, "steps": args.steps})
    chosen = presets.render_part(chosen)
    settings = RenderSettings(**chosen)
    layers = (args.layers.split(",") if args.layers else
              caricature_layers(model, BuildConfig(), {name: [0] for name in graph.conv_layers(model)}))
    names = args.photos.split(",")
    photos = [np.asarray(Image.open(SHARED / "samples" / n).convert("RGB")) for n in names]
    print(f"# {machine()}; device {grad.accelerator() or 'CPU'}; {args.model}; {settings}")
    rows = [[imaging.resize(p, settings.size, settings.size) for p in photos]]
    for layer in layers:
        renderer = CaricatureRenderer(model, layer, settings, preprocess)
        # Compiles the loops (one per canvas and 8-step chunk, whatever the steps) on a short run; not timed.
        renderer.settings = replace(settings, steps=8 * len(settings.scales))
        renderer.caricatures(photos, ["0" * 32] * len(photos))
        renderer.settings = settings
        start = time.perf_counter()
        images, cos = renderer.caricatures(photos, [f"{i:032x}" for i in range(len(photos))])
        # A short batch is padded to ROWS photos, as in a build: the seconds are per photo of a full one.
        seconds = (time.perf_counter() - start) / (-(-len(photos) // ROWS) * ROWS)
        targets = renderer.photos_at_size(photos)
        other = renderer.similarity(np.round(np.roll(targets, 1, axis=0) * 255).astype("uint8"), targets)
        print(f"{layer}: {seconds:.2f} s per photo; cosine with its photo "
              + ", ".join(f"{n} {c:.3f} (another scene {o:.3f})" for n, c, o in zip(names, cos, other)))
        rows.append(list(images))
    if args.sheet:
        sheet = np.concatenate([np.concatenate(column, axis=1) for column in zip(*rows)], axis=0)
        Image.fromarray(sheet).save(args.sheet)
        print(f"sheet: {args.sheet} (a row per photo: the photo, then {', '.join(layers)})")


if __name__ == "__main__":
    main()
