"""Reading the caches that earlier versions of cnn-gallery left: the one home of that code.

Ends with 0.2.0 (:data:`UNTIL`; tests/orchestrate/test_cache.py fails once the package reaches it).
A release that drops it bumps the cache's record format
(:data:`gallery.orchestrate.cache.FORMAT`), so every older entry is recomputed rather than
read, deletes this module, and says so in one line of its notes. Until then, two things
here keep an older cache's work:

- a cache folder from before folders were owned (its lock file beside ``objects/``) is
  adopted as it stands, and the temporaries such builds named their own way are swept;
- filter tiles cached before their *peak* was recorded get it from their saved pixels
  (:class:`PeakScorer`), one forward pass per unit instead of a whole optimization.

(Records of formats 1 and 2 are not read at all: they did not seal their key, and a
format bump recomputes them, as it will these.)
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import imaging
from ..folders import LEGACY_LOCK

UNTIL = (0, 2, 0)  # the first version without this module
TEMP = re.compile(r"\.[0-9a-f]{40}\.(bin|json)\.\w+\.tmp")  # how builds before ownership named their temporaries


def locked_cache(folder: Path) -> bool:
    """A cache folder a build before ownership wrote: its lock file, and ``objects/`` alone."""
    return (folder / LEGACY_LOCK).is_file() and {e.name for e in os.scandir(folder)} <= {LEGACY_LOCK, "objects"}


def adopt_locked(folder: Path, mark) -> bool:
    """Own such a folder: ``mark`` it as caches are marked now, and drop the old lock."""
    if not locked_cache(folder):
        return False
    mark(folder)
    (folder / LEGACY_LOCK).unlink()
    return True


class PeakScorer:
    """Adds the peak to the records of a unit's main tiles that lack it: one forward pass
    per unit (a unit's tiles are one rendering batch), a scorer per layer kept for the next.

    A filter image's record holds its peak: the strongest unit of the layer's output on the
    tile as saved, the statistic its top photos are ranked by (see
    :meth:`~gallery.render.optimize.FilterRenderer.scores`). Tiles cached before that have
    only their mean; the peak is added to their records
    (:meth:`~gallery.orchestrate.cache.Cache.amend`), so they are not counted as computed.
    """

    def __init__(self, model, job):
        self.model, self.job = model, job
        # Scored in float32 whatever the loop's precision, as rendered tiles are.
        self.settings = replace(job.render, precision="float32")
        self._renderers: dict = {}
        self.scored = 0

    def __call__(self, unit, found: dict, cache) -> None:
        """Amend ``found`` (``{key: (payload, meta)}``, from :func:`units.lookup`) in place."""
        # Deferred: the cache reads this module and stays free of Keras.
        from ..render.optimize import FilterRenderer

        lacking = unit.unscored(found)
        # Peaks were recorded before models of other channels than RGB were built: theirs all have one.
        if not lacking or not self.job.channels.plain:
            return
        if unit.layer not in self._renderers:
            self._renderers[unit.layer] = FilterRenderer(self.model, unit.layer, self.settings, self.job.preprocess)
        images = np.stack([imaging.decode(found[e.key][0]) for e in lacking])
        _, peaks = self._renderers[unit.layer].scores(images, [e.slot.index for e in lacking])
        for entry, peak in zip(lacking, peaks):
            found[entry.key] = (found[entry.key][0], cache.amend(entry.key, {"peak": float(peak)}))
        self.scored += len(lacking)
