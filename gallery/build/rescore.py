"""Peaks for tiles cached before they were recorded, from their saved pixels.

A filter image's record holds its *peak*: the strongest unit of the layer's output on the
tile as saved, the statistic its top photos are ranked by (see
:meth:`~gallery.render.optimize.FilterRenderer.scores`). Tiles cached before that have only
their mean. Rendering them again would cost the whole optimization; scoring them costs one
forward pass per unit's saved PNGs, so the driver does that, once, and adds the peak to
their records (:meth:`~gallery.build.cache.Cache.amend`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import imaging
from ..render.optimize import FilterRenderer
from .units import MAIN, FilterUnit


class PeakScorer:
    """Adds the peak to the records of a unit's main tiles that lack it: one forward pass
    per unit (a unit's tiles are one rendering batch), a scorer per layer kept for the next."""

    def __init__(self, model, job):
        self.model, self.job = model, job
        # Scored in float32 whatever the loop's precision, as rendered tiles are.
        self.settings = replace(job.render, precision="float32")
        self._renderers: dict[str, FilterRenderer] = {}
        self.scored = 0

    def __call__(self, unit, found: dict, cache) -> None:
        """Amend ``found`` (``{key: (payload, meta)}``, from :func:`units.lookup`) in place."""
        if not isinstance(unit, FilterUnit) or unit.variant != MAIN:
            return
        lacking = [e for e in unit.entries
                   if e.about["kind"] == "filter" and e.key in found and "peak" not in found[e.key][1]]
        # Peaks were recorded before models of other channels than RGB were built: theirs all have one.
        if not lacking or not self.job.channels.plain:
            return
        if unit.layer not in self._renderers:
            self._renderers[unit.layer] = FilterRenderer(self.model, unit.layer, self.settings, self.job.preprocess)
        images = np.stack([imaging.decode(found[e.key][0]) for e in lacking])
        _, peaks = self._renderers[unit.layer].scores(images, [e.slot[0] for e in lacking])
        for entry, peak in zip(lacking, peaks):
            found[entry.key] = (found[entry.key][0], cache.amend(entry.key, {"peak": float(peak)}))
        self.scored += len(lacking)
