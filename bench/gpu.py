#!/usr/bin/env python
"""The full VGG16 gallery on one accelerator: seconds and the fraction of peak FLOP/s.

    KERAS_BACKEND=jax python bench/gpu.py [--size 224] [--steps 512] [--precision bfloat16] [--peak-tflops T]

Renders every filter of every conv layer (4,224 for VGG16) with the default
parameterization and transforms, batched, and reports the time and the achieved
FLOP/s against the device's peak for the chosen precision (``--peak-tflops``; by default
an H100/H200 SXM's dense peak: 989 TFLOP/s in bf16, 494 in float32, which runs as TF32).
FLOPs are those executed, counted as ``gallery/render/cost.py`` does: per image and step,
twice the forward convolutions before the target layer and of the image's own filter
(the forward pass and the gradient with respect to the input), at the canvas each stage
of the schedule uses. Without an accelerator it refuses at once (``--allow-cpu`` runs a
smoke test anyway). The loop runs in bf16 by default, as the GPU presets do;
``--precision float32`` measures the float32 path. A quick smoke test on a CPU:
``--allow-cpu --layers block1_conv1,block5_conv3 --filters 8 --steps 8 --size 64``.

A GPU needs JAX's CUDA build (``pip install -U "jax[cuda12]"``; the ``jax[cpu]`` of the
test extra runs on the CPU only) and Keras 3, run with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import HED_VGG16 as DEFAULT_MODEL, machine  # first: it puts the repository on the path


# Dense peaks of an H100/H200 SXM, TFLOP/s: bf16 on tensor cores, and float32 convolutions,
# which XLA runs as TF32 on tensor cores by default.
PEAKS = {"bfloat16": 989.0, "float32": 494.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", default="", help="comma-separated (default: every conv layer)")
    parser.add_argument("--filters", type=int, default=0, help="filters per layer (default: all)")
    parser.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for --precision (default: an H100/H200 SXM's dense peak, "
                             "989 for bfloat16, 494 for float32 as TF32)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without an accelerator (a smoke test)")
    parser.add_argument("--ahead", choices=("auto", "on", "off"), default="auto",
                        help="compile the next layers in threads while one renders (auto: on an accelerator)")
    args = parser.parse_args()

    import keras

    from gallery import conv_layers, load_model, presets
    from gallery.config import RenderSettings
    from gallery.model.grad import accelerator
    from gallery.render import cost
    from gallery.render.optimize import Renderers, channel_count

    if accelerator() is None and not args.allow_cpu:
        sys.exit("bench/gpu.py measures an accelerator, and this machine has none (keras backend "
                 f"{keras.backend.backend()}); run it on a GPU with KERAS_BACKEND=jax, or pass --allow-cpu")
    peak = args.peak_tflops or PEAKS[args.precision]

    if args.model.is_file():
        model = load_model(str(args.model))
    else:  # the same architecture; random weights cost the same FLOPs
        model = keras.applications.VGG16(weights=None, include_top=False)
    schedule = presets.preset("default", "gpu")["scales"]
    settings = RenderSettings(size=args.size, steps=args.steps, batch=args.batch, precision=args.precision,
                              scales=schedule)
    layers = args.layers.split(",") if args.layers else conv_layers(model)
    print(f"device: {accelerator() or 'cpu'}; {machine()}; "
          f"keras {keras.__version__} backend {keras.backend.backend()}")
    print(f"size {settings.size}, steps {settings.steps}, schedule {settings.scales}, batch {settings.batch}, "
          f"precision {settings.precision}")

    selection = {("channel", layer): list(range(min(channel_count(model, layer), args.filters or 1 << 30)))
                 for layer in layers}
    ahead = {"auto": None, "on": True, "off": False}[args.ahead]
    costs = cost.Costs(model)  # only what runs: the convs before the layer, and each image's own filter
    flops_of = {layer: cost.total_flops(costs, settings, layer, len(filters)) for (_, layer), filters in selection.items()}
    total_time, total_flops, total_filters = 0.0, 0.0, 0
    start = time.perf_counter()  # compiling counts, as a build pays for it too
    with Renderers(model, settings, "caffe", selection, ahead=ahead) as renderers:
        for (_, layer), filters in selection.items():
            renderer = renderers.ready("channel", layer)  # waits for its compile, if ahead
            for i in range(0, len(filters), settings.batch):
                renderer.render(filters[i:i + settings.batch])
            seconds, start = time.perf_counter() - start, time.perf_counter()
            flops = flops_of[layer]
            total_time, total_flops = total_time + seconds, total_flops + flops
            total_filters += len(filters)
            print(f"{layer:<14} {len(filters):>4} filters {seconds:8.1f} s  {flops / seconds / 1e12:8.3g} TFLOP/s",
                  flush=True)
    rate = total_flops / total_time
    print(f"all: {total_filters} filters in {total_time:.1f} s (compiling included); "
          f"{total_flops / 1e15:.3g} PFLOP at {rate / 1e12:.3g} TFLOP/s = "
          f"{100 * rate / (peak * 1e12):.3g}% of {peak:g} TFLOP/s ({args.precision} peak)")


if __name__ == "__main__":
    main()
