#!/usr/bin/env python
"""Filter rendering against its peers at equal quality: the time each needs to reach the
robust activation of the tiles the keras.io loop publishes at 32 steps.

    python bench/filters.py [--layers block3_conv1,block5_conv3] [--filters 8] [--size 128]
                            [--keras-io-lr 907] [--rounds 1]

Methods, each timed on the same filters of the same layer at the same tile size, every
model and compiled function built and traced outside the timing:

* ``gallery``: the CPU default preset (Fourier parameterization with a 1/f^1.5
  spectrum, decorrelated colour bounded to a contrast ball, robustness transforms,
  full-size Adam steps of 0.2, the filters batched), at several step counts (the preset
  itself takes 64);
* ``keras.io``: the loop of "Visualizing what convnets learn" (F. Chollet, 2020), one
  filter at a time: uniform noise near grey, the mean post-ReLU activation (2 pixels of
  border left out), L2-normalised gradient steps. keras.io steps 10 on 180 px images in
  [-1, 1], about 4 grey levels per pixel per step; here pixels are caffe-scaled 0–255 at
  ``--size``, and ``--keras-io-lr`` (887 at 128 px) is the step that moves them as much;
  tiles are its own ``deprocess_image``, without the crop, so sizes match;
* ``tf-keras-vis`` (``pip install -e ".[bench]"``): ``ActivationMaximization`` with its
  defaults (RMSprop, jitter and rotation, TV and norm regularizers), run eagerly as that
  library does, one filter at a time.

Every method's saved 8-bit tiles are scored identically, by ``tests/tile_scores.py``:
*plain* (mean pre-activation), *robust* (the same over 16 fixed jitters, scales and
rotations) and *HF* (spectral power above half Nyquist: white noise 0.80). The headline
is the time to reach keras.io's 32-step robust activation; a method that never does
within its step counts says so. Absolute times on shared machines are noisy; compare
within one run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from common import HED_VGG16 as DEFAULT_MODEL, machine  # first: it puts the repository on the path
KERAS_IO_STEP = 4.0  # grey levels per pixel per step that keras.io's lr of 10 gives at 180 px in [-1, 1]


def keras_io_lr(size: int) -> float:
    """The L2-normalised step that moves caffe-scaled pixels as far as keras.io's does."""
    return KERAS_IO_STEP * math.sqrt(size * size * 3)


class KerasIo:
    """keras.io's loop, built once: extractor and ``tf.function`` step traced outside timing."""

    def __init__(self, model, layer, size, lr):
        import keras
        import tensorflow as tf

        self.size, self.lr = size, lr
        self.extractor = keras.Model(model.input, model.get_layer(layer).output)

        @tf.function
        def step(image, index):
            with tf.GradientTape() as tape:
                tape.watch(image)
                activation = self.extractor(image)
                loss = tf.reduce_mean(tf.gather(activation, index, axis=-1)[:, 2:-2, 2:-2])
            return image + self.lr * tf.math.l2_normalize(tape.gradient(loss, image))

        self.step = step
        self.render([0], 1)  # trace

    def render(self, filters, steps):
        import tensorflow as tf

        tiles = []
        for index in filters:
            rng = np.random.default_rng(index)
            # keras.io: uniform noise, (u - 0.5) * 0.25 in [-1, 1]: grey ± 16 levels; caffe-centred.
            rgb = 127.5 + (rng.uniform(size=(1, self.size, self.size, 3)) - 0.5) * 0.25 * 127.5
            image = tf.constant((rgb[..., ::-1] - [103.939, 116.779, 123.68]).astype("float32"))
            for _ in range(steps):
                image = self.step(image, tf.constant(index))
            tiles.append(deprocess(np.asarray(image)[0]))
        return np.stack(tiles)


def deprocess(x):
    """keras.io's ``deprocess_image`` without the crop; the model's input is BGR."""
    x = x - x.mean()
    x = x / (x.std() + 1e-5) * 0.15 + 0.5
    return (np.clip(x, 0, 1) * 255).astype("uint8")[..., ::-1]


class TfKerasVis:
    """tf-keras-vis's ``ActivationMaximization`` on the model cut at the layer (eager, RMSprop)."""

    def __init__(self, model, layer, size):
        import keras
        from tf_keras_vis.activation_maximization import ActivationMaximization
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        copy = keras.models.clone_model(model)  # calling its layers anew must leave the original's graph alone
        copy.set_weights(model.get_weights())
        inputs = keras.Input((size, size, 3))
        x = inputs
        for part in copy.layers[1:]:
            x = part(x)
            if part.name == layer:
                break
        self.maximizer = ActivationMaximization(keras.Model(inputs, x), model_modifier=[ReplaceToLinear()])
        self.render([0], 1)

    def render(self, filters, steps):
        from tf_keras_vis.utils.scores import CategoricalScore

        tiles = [self.maximizer(CategoricalScore(i), steps=steps)[0] for i in filters]
        return np.clip(np.stack(tiles), 0, 255).astype("uint8")


class Gallery:
    """The CPU default preset, at each step count the bench asks for."""

    def __init__(self, model, layer, size):
        from gallery import presets
        from gallery.config import RenderSettings
        from gallery.render.optimize import FilterRenderer

        self.renderers = {}
        self.make = lambda steps, n: FilterRenderer(model, layer, RenderSettings(
            **{**presets.resolve("default", None, {"size": size, "steps": steps}), "batch": n}), "caffe")

    def prepare(self, steps, n):
        if steps not in self.renderers:
            self.renderers[steps] = self.make(steps, n)
            self.renderers[steps].render(list(range(n)))  # compile every stage outside the timing

    def render(self, filters, steps):
        self.prepare(steps, len(filters))
        return self.renderers[steps].render(list(filters))[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--layers", default="block3_conv1,block5_conv3")
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--keras-io-lr", type=float, default=None, help="default: matched per pixel, see above")
    parser.add_argument("--gallery-steps", default="8,12,16,24,32,64")
    parser.add_argument("--peer-steps", default="16,32,64")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"model {args.model} not found (the offline fixtures live in ../shared/models)")

    import keras

    if keras.backend.backend() != "tensorflow":
        sys.exit("bench/filters.py compares with TensorFlow loops: run it with the TensorFlow backend")
    from gallery import load_model
    from tests.tile_scores import Scorer, high_frequency

    model = load_model(str(args.model))
    filters = list(range(args.filters))
    lr = args.keras_io_lr or keras_io_lr(args.size)
    print(f"machine: {machine()}; "
          f"keras {keras.__version__}, backend {keras.backend.backend()}; {args.filters} filters at {args.size} px; "
          f"keras.io step {lr:.0f}")
    for layer in args.layers.split(","):
        scorer = Scorer(model, layer)
        methods = {"gallery": (Gallery(model, layer, args.size), [int(s) for s in args.gallery_steps.split(",")]),
                   "keras.io": (KerasIo(model, layer, args.size, lr), sorted({32, *map(int, args.peer_steps.split(","))}))}
        try:
            methods["tf-keras-vis"] = (TfKerasVis(model, layer, args.size), [int(s) for s in args.peer_steps.split(",")])
        except ImportError:
            print("tf-keras-vis is not installed (pip install -e '.[bench]'); left out")
        rows = []
        for name, (method, step_counts) in methods.items():
            for steps in step_counts:
                if hasattr(method, "prepare"):
                    method.prepare(steps, len(filters))
                start = time.perf_counter()
                tiles = method.render(filters, steps)
                seconds = time.perf_counter() - start
                rows.append((name, steps, seconds, scorer.plain(tiles, filters).mean(),
                             scorer.robust(tiles, filters).mean(), high_frequency(tiles).mean()))
        target = next(r[4] for r in rows if r[0] == "keras.io" and r[1] == 32)
        base = next(r[2] for r in rows if r[0] == "keras.io" and r[1] == 32)
        print(f"\n{layer}: keras.io's 32-step robust activation is {target:.1f}, reached in {base:.2f}s")
        print(f"{'method':<14} {'steps':>5} {'seconds':>8} {'plain':>8} {'robust':>8} {'HF':>5}")
        for name, steps, seconds, plain, robust, hf in rows:
            print(f"{name:<14} {steps:>5} {seconds:>8.2f} {plain:>8.1f} {robust:>8.1f} {hf:>5.2f}")
        for name in methods:
            reached = [r for r in rows if r[0] == name and r[4] >= target]
            if reached:
                first = min(reached, key=lambda r: r[2])
                print(f"time to keras.io's 32-step robust activation, {name}: {first[2]:.2f}s at {first[1]} steps, "
                      f"{first[2] / base:.2f}x keras.io's time (HF {first[5]:.2f})")
            else:
                print(f"time to keras.io's 32-step robust activation, {name}: not reached within "
                      f"{max(r[1] for r in rows if r[0] == name)} steps")


if __name__ == "__main__":
    main()
