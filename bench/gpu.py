#!/usr/bin/env python
"""The full VGG16 gallery on one accelerator: seconds and the fraction of peak FLOP/s.

    KERAS_BACKEND=jax python bench/gpu.py [--peak-tflops 989] [--size 224] [--steps 512] [--precision bfloat16]

Renders every filter of every conv layer (4,224 for VGG16) with the default
parameterization and transforms, batched, and reports the time and the achieved
FLOP/s against ``--peak-tflops`` (989: an H100 SXM's dense bf16 peak). FLOPs are
counted analytically: per image and step, twice the forward convolutions up to the
target layer (the forward pass plus the gradient with respect to the input), at the
canvas each stage of the schedule uses. The loop runs in bf16 by default, as the GPU
presets do; ``--precision float32`` measures the float32 path. Flags shrink the run for a quick check on a CPU:
``--layers block1_conv1,block5_conv3 --filters 8 --steps 8 --size 64``.
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


def conv_flops(model, layer_name: str, canvas: int) -> float:
    """Forward multiply-adds × 2 of every conv up to and including ``layer_name``, per image."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            probe = keras.Model(model.inputs, layer.output)
            _, h, w, c_out = probe.compute_output_shape((1, canvas, canvas, 3))
            kh, kw, c_in, _ = layer.kernel.shape
            total += 2.0 * h * w * kh * kw * c_in * c_out
        if layer.name == layer_name:
            return total
    raise ValueError(f"no layer {layer_name!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layers", default="", help="comma-separated (default: every conv layer)")
    parser.add_argument("--filters", type=int, default=0, help="filters per layer (default: all)")
    parser.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--ahead", choices=("auto", "on", "off"), default="auto",
                        help="compile the next layers in threads while one renders (auto: on an accelerator)")
    args = parser.parse_args()

    import keras

    from gallery import conv_layers, load_model
    from gallery.config import RenderSettings
    from gallery.model.grad import accelerator
    from gallery.render.optimize import Renderers, channel_count, stages

    if args.model.is_file():
        model = load_model(str(args.model))
    else:  # the same architecture; random weights cost the same FLOPs
        model = keras.applications.VGG16(weights=None, include_top=False)
    settings = RenderSettings(size=args.size, steps=args.steps, batch=args.batch, precision=args.precision)
    layers = args.layers.split(",") if args.layers else conv_layers(model)
    print(f"device: {accelerator() or 'cpu'}; {platform.machine()}, {os.cpu_count()} cores; "
          f"keras {keras.__version__} backend {keras.backend.backend()}")
    print(f"size {settings.size}, steps {settings.steps}, schedule {settings.scales}, batch {settings.batch}, "
          f"precision {settings.precision}")

    selection = {("channel", layer): list(range(min(channel_count(model, layer), args.filters or 1 << 30)))
                 for layer in layers}
    ahead = {"auto": None, "on": True, "off": False}[args.ahead]
    flops_of = {layer: len(filters) * sum(n * conv_flops(model, layer, canvas) * 2
                                          for canvas, n in stages(settings.steps, settings.size, settings.scales))
                for (_, layer), filters in selection.items()}
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
          f"{100 * rate / (args.peak_tflops * 1e12):.3g}% of {args.peak_tflops:g} TFLOP/s")


if __name__ == "__main__":
    main()
