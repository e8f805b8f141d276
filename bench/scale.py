#!/usr/bin/env python
"""Units per second with one and two Ray workers, and what that projects to on GPUs.

    python bench/scale.py [--layer block3_conv1] [--units 8] [--size 64] [--steps 32] [--batch 4]
                          [--gpu-tflops 200]

Each worker is limited to one thread, so on a 2-core machine the second worker has a
core of its own: the ratio shows how much of it the executor turns into throughput
(expect at least 1.8x). Workers load the model and compile their loops on a warm-up unit
each, outside the timing; then the same units run with one worker and with two, in one
Ray session. Both sides do the same work: the same units, byte for byte.

The projection for N GPUs uses what was measured here: the FLOPs of the work (counted,
see gallery/render/cost.py) and the driver's own cost per filter image (settling a
unit's results into the cache and making thumbnails, which the driver alone does, so it
does not shrink with more GPUs). The GPUs' sustained FLOP/s is an assumption
(--gpu-tflops), not a measurement: no GPU was measured here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from common import HED_VGG16 as DEFAULT_MODEL, machine  # first: it puts the repository on the path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--layer", default="block3_conv1")
    parser.add_argument("--units", type=int, default=16, help="timed units per run")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gpu-tflops", type=float, default=200.0,
                        help="assumed sustained FLOP/s of one GPU on this loop, for the projection only")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"bench/scale.py needs {args.model} (the offline fixtures in ../shared)")

    import ray

    from gallery.orchestrate import units
    from gallery.orchestrate.cluster import ModelSource, RayExecutor
    from gallery.orchestrate.progress import Progress
    from gallery import presets
    from gallery.config import HALF_THEN_FULL, RenderSettings
    from gallery.model import graph, loading
    from gallery.render import cost

    model = loading.load_model(str(args.model))
    # The schedule the README's figures were measured with; it sets the work, not the scaling.
    render = RenderSettings(size=args.size, steps=args.steps, batch=args.batch, scales=HALF_THEN_FULL)
    count = args.units + 2  # two warm-up units
    job = units.Job(loading.fingerprint(model), render, "caffe",
                    {args.layer: tuple(range(count * args.batch))})
    plan = units.filter_units(job)[:count]
    tasks = [units.Task(i, u, frozenset(e.key for e in u.entries)) for i, u in enumerate(plan)]
    costs = cost.Costs(model)
    unit_flops = cost.total_flops(costs, render, args.layer, args.batch)
    print(f"machine: {machine()}; "
          f"{args.model.name} {args.layer}, units of {args.batch} filters at {args.size} px, {args.steps} steps "
          f"({cost.describe(unit_flops)} each)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    source = ModelSource.of(str(args.model), model)
    measured = {}
    try:
        for workers in (1, 2):
            executor = RayExecutor(job, source, worker_cpus=1, workers=workers)
            silent = Progress({t.uid: ([((args.layer, args.size), unit_flops, 1)], args.batch, 0) for t in tasks},
                              0, 0, 0, 0, stream=open(os.devnull, "w"))
            # Every worker loads the model and compiles its loops on a unit of its own, untimed.
            ray.get([actor.run.remote(task) for actor, task in zip(executor.actors, tasks)])
            timed = tasks[2:]
            start = time.perf_counter()
            results = list(executor.run(timed, silent))
            wall = time.perf_counter() - start
            seconds = [result.seconds for _, result in results]
            executor.close()
            measured[workers] = (len(timed) / wall, statistics.mean(seconds), wall)
            print(f"{workers} worker{'s' * (workers > 1)}: {len(timed)} units in {wall:.1f}s, "
                  f"{measured[workers][0]:.3f} units/s ({measured[workers][1]:.2f}s of compute per unit)")
    finally:
        ray.shutdown()
    ratio = measured[2][0] / measured[1][0]
    print(f"second worker: {ratio:.2f}x the units per second of one (target at least 1.8x): "
          f"{'met' if ratio >= 1.8 else 'NOT met'}")

    # The driver's own work per filter image: settling a unit into a cache, thumbnails included.
    import tempfile

    from gallery.orchestrate.cache import Cache
    from gallery.orchestrate.state import Gallery

    with tempfile.TemporaryDirectory() as folder:
        cache, gallery = Cache(folder), Gallery(job, [], 0, 5, 8)
        start = time.perf_counter()
        for task, result in results:
            gallery.absorb(task.unit, units.store(task, result.produced, {}, cache), cache)
        driver = (time.perf_counter() - start) / sum(task.unit.images for task, _ in results)

    # Projection: the full VGG16 gallery at the GPU default preset, on N GPUs.
    gpu = RenderSettings(**{k: v for k, v in presets.preset("default", "gpu").items() if k != "variants"})
    layers = graph.conv_layers(model)
    filters = sum(graph.locate(model, layer).layer.filters for layer in layers)
    total = sum(cost.total_flops(costs, gpu, layer, graph.locate(model, layer).layer.filters) for layer in layers)
    print(f"projection, full VGG16 at the GPU default (224 px, 512 steps, bf16): {cost.describe(total)} for "
          f"{filters:,} filters; the driver's work per filter image, measured here: {driver * 1e3:.1f} ms "
          f"({filters * driver:.0f}s in all, alongside the GPUs); one GPU's rate ASSUMED {args.gpu_tflops:.0f} "
          "TFLOP/s sustained (not measured)")
    for n in (1, 2, 4, 8, 16):
        seconds = max(total / (n * args.gpu_tflops * 1e12), filters * driver)
        print(f"  {n:>2} GPU{'s' * (n > 1)}: about {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
