"""The plan in a person's terms, before the long work starts: what will be rendered, and
for how long on this machine.

The time comes from the cost model (:mod:`gallery.render.cost`, work in FLOPs) and one
short calibration: two optimization steps of one batch of the layer that carries most of
the build's work, run twice through the build's own renderer; the first run is the loop's
compiling, the second the machine's seconds per FLOP on that layer. Seconds per FLOP
differ between layers (cheap steps spend more of their time on per-step overhead), so the
figure is an estimate, said as one ("about"), and the running ETA takes over once each
layer has been measured (see :mod:`gallery.orchestrate.progress`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..config import FULL
from ..render import cost
from ..render.optimize import FilterRenderer
from ..render.schedule import stages
from .progress import about

CALIBRATION_STEPS = 2
# Below this much work a build takes seconds; calibrating would cost more than it tells.
SMALL = 2e10  # FLOPs
HOUR = 3600.0


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: too little work to be worth measuring
    flops: float
    layer: str | None = None  # where the machine was measured (the heaviest layer)
    overhead: float = 0.0  # seconds per image-step whatever its FLOPs
    per_flop: float | None = None  # seconds per FLOP beyond that
    compile: float = 0.0  # seconds one loop took to compile
    layers: tuple[str, ...] = ()  # every layer measured

    @property
    def prior(self) -> tuple | None:
        """What :class:`~gallery.orchestrate.progress.Progress` starts from for stages not yet run."""
        return None if self.per_flop is None else (self.overhead, self.per_flop, self.compile, self.layers)


def _timed(model, job, costs, layer: str) -> tuple[float, float, float]:
    """``(seconds per image-step, FLOPs per image-step, seconds to compile)`` on ``layer``:
    its loop run twice through the build's own renderer, the first run compiling it."""
    renderer = FilterRenderer(model, layer, replace(job.render, steps=CALIBRATION_STEPS, scales=FULL), job.preprocess)
    indices = list(job.selection[layer])[:max(1, min(job.render.batch, renderer.channels))]
    start = time.perf_counter()
    renderer.images(indices)
    first = time.perf_counter() - start
    start = time.perf_counter()
    renderer.images(indices)
    seconds = time.perf_counter() - start
    step = costs.step_flops(layer, cost.network_side(job.render, job.render.size))
    return seconds / (CALIBRATION_STEPS * len(indices)), step, max(0.0, first - seconds)


def calibrate(model, job, costs, tasks) -> Estimate:
    """Time the build's tasks would take here, from short runs of two of its layers: the one
    that carries most of the work and the one with the cheapest steps. Between them a step
    costs a fixed overhead plus its FLOPs at one rate (a line through the two points)."""
    work = {id(t): t.unit.flops(job, costs) for t in tasks}
    total = sum(work.values())
    optimized = [t for t in tasks if t.unit.optimizes(job)]
    if total < SMALL or not optimized:
        return Estimate(None, total)
    by_layer: dict[str, float] = {}
    for t in optimized:
        by_layer[t.unit.layer] = by_layer.get(t.unit.layer, 0.0) + work[id(t)]
    side = cost.network_side(job.render, job.render.size)
    heaviest = max(by_layer, key=by_layer.get)
    cheapest = min(by_layer, key=lambda layer: costs.step_flops(layer, side))
    s_heavy, f_heavy, compile_ = _timed(model, job, costs, heaviest)
    overhead, per_flop = 0.0, s_heavy / f_heavy
    if f_heavy > 1.5 * costs.step_flops(cheapest, side):
        s_cheap, f_cheap, _ = _timed(model, job, costs, cheapest)
        slope = (s_heavy - s_cheap) / (f_heavy - f_cheap)
        if slope > 0 and s_cheap - slope * f_cheap >= 0:
            overhead, per_flop = s_cheap - slope * f_cheap, slope
    seconds = 0.0
    for t in tasks:
        stages_, images, _, optimized_ = t.unit.stages(job, costs, t.parts)
        for _, step_flops, n in stages_:
            seconds += n * step_flops * per_flop + (n * images * overhead if optimized_ else 0.0)
    # Each layer's loops compile once per stage of the schedule, as the calibrated one did.
    r = job.render
    loops = len({(t.unit.variant, t.unit.layer) for t in optimized}) * len(stages(r.steps, r.size, r.scales))
    return Estimate(seconds + loops * compile_, total, heaviest, overhead, per_flop, compile_,
                    tuple(dict.fromkeys((heaviest, cheapest))) if overhead else (heaviest,))


def plan_lines(job, tasks, photos: int, estimate: Estimate, executor: str) -> list[str]:
    """What the build will do, in words, with its time here; how to get a quick look instead."""
    images = sum(t.unit.images for t in tasks)
    layers = len({t.unit.layer for t in tasks if t.unit.images})
    photo_units = [t for t in tasks if t.unit.photos]
    r = job.render
    parts = []
    if images:
        parts.append(f"{images:,} filter images of {layers} layer{'s' * (layers != 1)} "
                     f"({r.size} px, {r.steps} steps)")
    if photo_units:
        caricatures = f"; caricatures at {', '.join(job.caricatures)}" if job.caricatures else ""
        parts.append(f"{photos:,} photo{'s' * (photos != 1)} ({', '.join(job.methods)}{caricatures})")
    what = " and ".join(parts) or "nothing"
    if estimate.seconds is None:
        when = f"a small build ({cost.describe(estimate.flops)}), seconds to a minute here"
    else:
        where = "in this process" if executor == "local" else "for one worker like this process; Ray workers share it"
        when = f"{about(estimate.seconds).replace(' left', '')} {where} (measured on {' and '.join(estimate.layers)})"
    lines = [f"  plan: {what}; {when}"]
    if estimate.seconds is not None and estimate.seconds > 10 * 60:
        lines.append("  for a first look in minutes: --filters 0:8 (8 filters of each layer), or --preset preview; "
                     "Ctrl-C stops at any time and the next run resumes from the cache")
    return lines


def long_warning(estimate: Estimate, interactive: bool) -> str | None:
    """One plain line for a person at a terminal when the build will pass an hour."""
    if not interactive or estimate.seconds is None or estimate.seconds < HOUR:
        return None
    return (f"this build will take {about(estimate.seconds).replace(' left', '')}; "
            "press Ctrl-C and add --filters 0:8 for a first look in minutes")
