#!/usr/bin/env python
"""What each preset costs for a whole model on this machine, from a short sample.

    python bench/presets.py [--model PATH] [--sample-steps 8] [--sample-filters 4]

For every conv layer it times ``--sample-filters`` filters for ``--sample-steps`` steps
at each canvas size of the preset's schedule (after compiling), then scales to the
layer's filter count and the preset's steps and variants. Steps cost the same from first to
last, so the estimate is linear; compiling (a few seconds per layer) is left out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import HED_VGG16 as DEFAULT_MODEL, machine  # first: it puts the repository on the path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--presets", default="preview,default,high")
    parser.add_argument("--sample-steps", type=int, default=8)
    parser.add_argument("--sample-filters", type=int, default=4)
    args = parser.parse_args()

    import keras

    from gallery import conv_layers, load_model
    from gallery.config import RenderSettings
    from gallery.model.grad import accelerator
    from gallery.render.objectives import VARIANTS
    from gallery.render.optimize import FilterRenderer, channel_count
    from gallery.render.schedule import stages
    from gallery.presets import preset, render_part

    model = load_model(str(args.model)) if args.model.is_file() else keras.applications.VGG16(
        weights=None, include_top=False)
    device = accelerator()
    print(f"device: {device or 'cpu'}; {machine()}; "
          f"keras {keras.__version__} backend {keras.backend.backend()}")
    filters = list(range(args.sample_filters))
    for name in args.presets.split(","):
        chosen = preset(name, device)
        variants = chosen.get("variants", ())
        settings = RenderSettings(**render_part(chosen))
        total = 0.0
        for layer in conv_layers(model):
            per_filter = 0.0
            for canvas, n in stages(settings.steps, settings.size, settings.scales):
                # A step on a canvas of c pixels costs what a full-size step of a c-pixel
                # tile costs (the resize to it is negligible next to the network).
                probe = RenderSettings(**{**chosen, "size": canvas, "steps": args.sample_steps, "scales": (1.0,)})
                renderer = FilterRenderer(model, layer, probe, "caffe")
                renderer.render(filters)  # compile
                start = time.perf_counter()
                renderer.render(filters)
                per_filter += n * (time.perf_counter() - start) / args.sample_steps / len(filters)
            images = 1 + sum(VARIANTS[v].copies for v in variants)
            total += per_filter * channel_count(model, layer) * images
        print(f"{name:<8} size {settings.size}, {settings.steps} steps, schedule {settings.scales}, "
              f"variants {', '.join(variants) or 'none'}: about {total / 3600:.1f} h ({total / 60:.0f} min)", flush=True)


if __name__ == "__main__":
    main()
