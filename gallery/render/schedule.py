"""The schedule of an optimization, and how work is cut into batches: pure arithmetic,
no Keras, shared by the renderer, the planner and the estimates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..config import RenderSettings
from ..errors import GalleryError

CHUNK = 8  # steps fused into one compiled loop between progress reports


def stages(steps: int, size: int, scales: Sequence[float]) -> list[tuple[int, int]]:
    """``[(canvas, steps)]``: a coarse-to-fine schedule with equal shares of the steps.

    Early steps see the image shrunk to ``scale · size`` pixels, where a step costs
    ``scale²``; they settle its large-scale structure (as DeepDream's octaves do), and
    the last stage, always at full size, adds the detail. The remainder of an uneven
    split goes to the last stage.
    """
    share = steps // len(scales)
    plan = [(max(16, round(size * s)), share) for s in scales[:-1]]
    plan.append((max(16, round(size * scales[-1])), steps - share * (len(scales) - 1)))
    return [(canvas, n) for canvas, n in plan if n > 0]


def spans(total: int, size: int) -> list[tuple[int, int]]:
    """``[(start, length)]`` covering ``range(total)`` in pieces of at most ``size``.

    Rendering and compiling ahead both cut work this way, so they meet the same shapes.
    """
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def snapshot_steps(settings: RenderSettings, count: int) -> list[int]:
    """The steps after which :meth:`FilterRenderer.render` takes ``count`` snapshots: step 0
    (the starting image, before any step), then ends of its compiled chunks spaced
    geometrically in steps up to the final step.

    Most of an image forms in its first steps, so evenly spaced frames would show the start
    once and then the same image over and over; geometric spacing (8, 16, 32, 64 of 64)
    gives each frame a like share of the change. Snapshots are taken only where a chunk
    ends, between two compiled loops, so taking them changes neither the loops nor their
    results.
    """
    ends, done = [], 0
    for _, n in stages(settings.steps, settings.size, settings.scales):
        for _, length in spans(n, CHUNK):
            done += length
            ends.append(done)
    if not 2 <= count <= len(ends) + 1:
        raise GalleryError(f"--trajectory {count}: expected 2 to {len(ends) + 1} snapshots, the start and one per "
                           f"{CHUNK} steps at most ({settings.steps} steps give {len(ends) + 1} places to take one)")
    picks: list[int] = []
    for k, target in enumerate(np.geomspace(ends[0], ends[-1], count - 1) if count > 2 else [ends[-1]]):
        # The nearest end (in ratio) after the last pick that leaves one for each later target.
        free = range(picks[-1] + 1 if picks else 0, len(ends) - (count - 2 - k))
        picks.append(min(free, key=lambda i: abs(np.log(ends[i] / target))))
    return [0] + [ends[i] for i in picks]
