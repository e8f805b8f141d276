#!/usr/bin/env python
"""Seconds per filter for filter rendering, as ratios against baselines run in the same process.

    python bench/filters.py [--model PATH] [--layer block5_conv3] [--size 128] [--steps 32] [--filters 4] [--rounds 3]

Compares, on the same layer, size and steps:
  * ``gallery``: the gallery's renderer (Fourier parameterization, robustness transforms,
    pre-activation objective), filters batched;
  * ``gallery, batch 1``: the same, one filter per optimization;
  * ``keras-io loop``: the keras.io "visualizing what convnets learn" method, one filter at a
    time: a truncated feature extractor, plain pixels, a ``tf.function`` gradient-ascent
    step on the mean post-ReLU activation (TensorFlow backend only).

Absolute times on shared machines are noisy; the ratios within one run are the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT.parent / "shared" / "models" / "vgg16_hed_notop.keras"


def keras_io_baseline(model, layer_name, size, steps, filters):
    """One filter at a time, as in the keras.io example (F. Chollet, 2020)."""
    import keras
    import numpy as np
    import tensorflow as tf

    extractor = keras.Model(model.inputs, model.get_layer(layer_name).output)

    @tf.function
    def step(image, index, lr):
        with tf.GradientTape() as tape:
            tape.watch(image)
            activation = extractor(image)
            loss = tf.reduce_mean(activation[:, 2:-2, 2:-2, index])
        grads = tf.math.l2_normalize(tape.gradient(loss, image))
        return image + lr * grads

    for index in filters:
        image = tf.random.uniform((1, size, size, 3)) * 20 + 128 - 10 - 123.68  # caffe-centred
        for _ in range(steps):
            image = step(image, tf.constant(index), tf.constant(10.0))
        np.asarray(image)


def tf_keras_vis_baseline(model, layer_name, size, steps, filters):
    """tf-keras-vis ActivationMaximization (its defaults: Adam, jitter, rotation, TV and
    norm regularizers), one filter per call, on the model cut at the layer."""
    import keras
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    inputs = keras.Input((size, size, 3))
    x = inputs
    for layer in model.layers[1:]:
        x = layer(x)
        if layer.name == layer_name:
            break
    maximizer = ActivationMaximization(keras.Model(inputs, x), model_modifier=[ReplaceToLinear()])
    for index in filters:
        maximizer(CategoricalScore(index), steps=steps)


def timed(fn, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--preprocess", default="caffe")
    parser.add_argument("--layer", default="block5_conv3")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--filters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"model {args.model} not found (the offline fixtures live in ../shared/models)")

    import keras

    from gallery import load_model
    from gallery.config import HALF_THEN_FULL, RenderSettings
    from gallery.render.optimize import FilterRenderer

    model = load_model(str(args.model))
    filters = list(range(args.filters))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; "
          f"keras {keras.__version__} backend {keras.backend.backend()}")
    print(f"layer {args.layer}, size {args.size}, steps {args.steps}, {len(filters)} filters")

    def ours(batch, **options):
        settings = RenderSettings(size=args.size, steps=args.steps, batch=batch, **options)
        renderer = FilterRenderer(model, args.layer, settings, args.preprocess)
        renderer.render(filters[:batch])  # compile every stage outside the timing

        def run():
            for start in range(0, len(filters), batch):
                renderer.render(filters[start:start + batch])
        return run

    n = len(filters)
    runs = {
        "gallery": ours(n, scales=HALF_THEN_FULL),
        "gallery, full-size steps": ours(n, scales=(1.0,)),
        "gallery, Lucid's padded canvas": ours(n, scales=(1.0,), transforms="lucid"),
        "gallery, batch 1": ours(1, scales=HALF_THEN_FULL),
    }
    counts = dict.fromkeys(runs, n)
    if keras.backend.backend() == "tensorflow":
        keras_io_baseline(model, args.layer, args.size, 1, filters[:1])  # trace once
        runs["keras-io loop"] = lambda: keras_io_baseline(model, args.layer, args.size, args.steps, filters)
        counts["keras-io loop"] = n
        try:
            tf_keras_vis_baseline(model, args.layer, args.size, 1, filters[:1])
            runs["tf-keras-vis"] = lambda: tf_keras_vis_baseline(model, args.layer, args.size, args.steps, filters[:2])
            counts["tf-keras-vis"] = 2
        except ImportError:
            print("tf-keras-vis is not installed (pip install -e '.[bench]'); skipping it")
    # Rounds in rotating order, best of each: shared machines drift by 2x within minutes.
    results = dict.fromkeys(runs, float("inf"))
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name] = min(results[name], timed(runs[name]) / counts[name])
    base = results["gallery"]
    print(f"{'method':<32} {'s/filter':>9} {'gallery is faster by':>21}")
    for name, seconds in results.items():
        print(f"{name:<32} {seconds:9.3f} {seconds / base:20.2f}x")


if __name__ == "__main__":
    main()
