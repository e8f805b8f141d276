#!/usr/bin/env python
"""The image's gradient through forward convolutions, against the backend's own rule.

    python bench/backward.py [--models vgg16_hed_notop,mobilenet_v2_imagenet,efficientnet_lite0_imagenet]
                             [--layers block2_conv2,...] [--filters 8] [--steps 64] [--preset default]

For each layer, renderers of the preset (this machine's CPU default unless told) by three
routes: *baseline*, traced under ``backward.backend_rule()`` and ``folding.unfolded()``
(TensorFlow's own gradient kernels, the model as it is); *rule*, the image's gradient
through forward convolutions (:mod:`gallery.model.backward`); *rule+fold*, as a build
renders, also through the copy with batch normalization folded (:mod:`gallery.model.folding`;
left out for a model with none). *s/step* is the fastest of three 8-step chunks of the
whole batch, taken in turns; *x* the baseline's time over the route's, in this run. Then
each renders the preset's full steps, and the tiles are compared: *robust*
(``tests/tile_scores.py``, median over the filters), and the last route's against the
baseline's: the largest difference of any 8-bit value, and the share of values that differ.
The same function and gradient to float32 rounding give equally strong tiles, not the same
pixels (Adam's first steps turn rounding in the smallest gradients into full steps).

``--kernels`` times single convolutions instead, 8 images each: the forward kernel, and
forward plus the input's gradient through TensorFlow's kernel and through the rule; and,
for strided depthwise layers (which keep TensorFlow's kernel), the alternative tried: the
gradient zero-filled up to the input's size and convolved at stride 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from common import SHARED, machine  # first: it puts the repository on the path
from quality import Renderer, sheet

LAYERS = {"vgg16_hed_notop": ("caffe", "block2_conv2,block4_conv3"),
          "mobilenet_v2_imagenet": ("none", "block_8_expand,Conv_1"),
          "efficientnet_lite0_imagenet": ("none", "block8_expand_conv,top_conv")}


# (side, in channels, out channels or 0 for depthwise, kernel, stride): VGG16-HED's and the
# depthwise models' shapes at 128 px.
SHAPES = [(128, 64, 64, 3, 1), (64, 128, 128, 3, 1), (32, 256, 256, 3, 1), (16, 512, 512, 3, 1),
          (8, 512, 512, 3, 1), (16, 64, 384, 1, 1), (4, 320, 1280, 1, 1), (16, 384, 0, 3, 1),
          (8, 672, 0, 5, 1), (65, 96, 0, 3, 2), (33, 144, 0, 3, 2), (67, 144, 0, 5, 2)]


def kernels():
    import tensorflow as tf

    from gallery.model import grad

    def timed(fn, *args):
        fn(*args)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(5):
                out = fn(*args)
            [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]
            best = min(best, (time.perf_counter() - start) / 5)
        return best * 1000

    def upsampled(dy, kernel, side, k):
        """A stride-2 VALID depthwise layer's input gradient: dy zero-filled, then stride 1."""
        n, h, _, c = dy.shape
        zero = tf.zeros_like(dy)
        up = tf.reshape(tf.stack([tf.stack([dy, zero], 3), tf.stack([zero, zero], 3)], 2), [n, 2 * h, 2 * h, c])
        up, extra = up[:, :2 * h - 1, :2 * h - 1], side - (2 * h - 1 + k - 1)
        pads = [[0, 0], [k - 1, k - 1 + extra], [k - 1, k - 1 + extra], [0, 0]]
        return tf.nn.depthwise_conv2d(up, tf.reverse(kernel, [0, 1]), [1, 1, 1, 1], pads)

    print(f"{'shape (side, in, out, k, stride)':<34} {'forward ms':>10} {'+TF grad':>9} {'+rule':>7} "
          f"{'TF grad/fwd':>11} {'rule/fwd':>8}")
    rng = np.random.default_rng(0)
    for side, cin, cout, k, stride in SHAPES:
        depthwise = cout == 0
        x = tf.constant(rng.normal(size=(8, side, side, cin)).astype("float32"))
        kernel = tf.constant(rng.normal(size=(k, k, cin, 1 if depthwise else cout)).astype("float32"))
        padding = "VALID" if stride > 1 else "SAME"
        if depthwise:
            stock = lambda x, w: tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding)  # noqa: E731
        else:
            stock = lambda x, w: tf.nn.conv2d(x, w, 1, padding)  # noqa: E731
        dy = tf.constant(rng.normal(size=stock(x, kernel).shape).astype("float32"))

        def with_grad(conv):
            @tf.function
            def run(x, w):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    total = tf.reduce_sum(conv(x, w) * dy)
                return total, tape.gradient(total, x)  # the forward too, or the trace prunes it
            return run

        forward = timed(tf.function(stock), x, kernel)
        tf_grad = timed(with_grad(stock), x, kernel)
        if stride == 1:
            rule = timed(with_grad(grad.input_conv(depthwise, padding.lower(), (k, k))), x, kernel)
        else:
            alternative = tf.function(lambda dy, w: upsampled(dy, w, side, k))
            rule = forward + timed(alternative, dy, kernel)  # the forward runs as TensorFlow's
        label = f"{(side, cin, cout or 'dw', k, stride)}" + ("" if stride == 1 else " (upsampled)")
        print(f"{label:<34} {forward:>10.2f} {tf_grad:>9.2f} {rule:>7.2f} "
              f"{(tf_grad - forward) / forward:>11.2f} {(rule - forward) / forward:>8.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(LAYERS), help="model files' stems in ../shared/models")
    parser.add_argument("--layers", default=None, help="default: two per fixture model (one model only)")
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--kernels", action="store_true", help="time single convolutions instead")
    parser.add_argument("--sheets", type=Path, default=None, help="a folder for a contact sheet per layer")
    args = parser.parse_args()
    if args.kernels:
        print(f"machine: {machine()}")
        return kernels()
    stems = args.models.split(",")
    if args.layers and len(stems) != 1:
        sys.exit(f"--layers names layers of one model; got {len(stems)} models ({args.models})")
    for stem in stems:
        if not (SHARED / "models" / f"{stem}.keras").is_file():
            sys.exit(f"model {stem}.keras not found in {SHARED / 'models'} (the offline fixtures)")

    import keras

    from gallery import load_model, presets
    from gallery.model import backward, folding, precision
    from gallery.render.schedule import CHUNK
    from tests.tile_scores import Scorer

    print(f"machine: {machine()}; keras {keras.__version__}, backend {keras.backend.backend()}; "
          f"preset {args.preset} for a CPU, filters 0-{args.filters - 1}")
    print("s/step: a step of the whole batch; x: the baseline's time over each route's; robust: median over "
          "the filters; max diff, differ: the last route's tiles against the baseline's, in 8-bit levels")
    filters = list(range(args.filters))
    for stem in stems:
        preprocess, layers = LAYERS.get(stem, ("none", None))
        model = load_model(str(SHARED / "models" / f"{stem}.keras"))
        base = precision.settings_for(model, *(presets.render_part(
            presets.resolve(args.preset, None, {"steps": args.steps}, bf16)) for bf16 in (None, False)))
        base.pop("batch", None)
        routes = {"baseline": (backward.backend_rule, folding.unfolded), "rule": (folding.unfolded,), "rule+fold": ()}
        if folding.folded(model) is model:
            routes.pop("rule+fold")  # nothing to fold: the same as the rule
        for layer in (args.layers or layers or "").split(","):
            renderers = {}
            for name, contexts in routes.items():
                with ExitStack() as stack:  # traced inside, so each route's loops keep its kernels and copy
                    for context in contexts:
                        stack.enter_context(context())
                    renderers[name] = Renderer(model, layer, preprocess, base, filters)
            rounds = [[r.chunk_seconds() for r in renderers.values()] for _ in range(3)]
            per_step = [min(times) / CHUNK for times in zip(*rounds)]
            tiles = [r.render(base["steps"])[0] for r in renderers.values()]
            scorer = Scorer(model, layer, caffe=preprocess == "caffe")
            robust = [np.median(scorer.robust(t, filters)) for t in tiles]
            diff = np.abs(tiles[0].astype(int) - tiles[-1].astype(int))
            figures = "  ".join(f"{name} {step:.3f} s/step x{per_step[0] / step:.2f} robust {r:.1f}"
                                for name, step, r in zip(renderers, per_step, robust))
            print(f"{stem} {layer}: {figures}  max diff {diff.max()} differ {(diff > 0).mean():.3f}", flush=True)
            if args.sheets:
                sheet(list(zip(renderers, tiles)), args.sheets / f"backward_{stem}_{layer}.png", columns=len(filters))


if __name__ == "__main__":
    main()
