"""Running one unit: what every executor calls, in-process or on a remote worker.

A :class:`Worker` holds one loaded model for many units: the renderers keep their
compiled loops and the photo analysis its compiled passes. Each unit kind runs itself on
it (:meth:`~.units.filters.FilterUnit.run`, :meth:`~.units.photos.PhotoUnit.run`). A
worker reads no cache and writes no file: it returns the entries' bytes and metadata, and
the driver alone writes them.
"""

from __future__ import annotations

import time

from ..photos.activations import Activations
from ..photos.explain import explainer
from ..photos.faithfulness import Curves
from ..photos.sanity import Copies, Randomization
from ..render.caricature import CaricatureRenderer
from ..render.optimize import Renderers
from .units import Job, Result, Task


class Worker:
    def __init__(self, model, job: Job, ahead: bool | None = None):
        self.model, self.job = model, job
        groups = {(variant, layer): indices for variant in job.kinds for layer, indices in job.selection.items()}
        self.renderers = Renderers(model, job.render, job.preprocess, groups, ahead=ahead, channels=job.channels)
        self._activations = None
        self._cams: dict = {}
        self._caricaturists: dict[str, CaricatureRenderer] = {}
        self._curves = None
        self._randomized: dict = {}
        self._copies = None  # the randomized copies of the model, shared by every method's check

    def run(self, task: Task, on_step=None) -> Result:
        """Produce the entries of the passes ``task`` needs; ``on_step`` reports progress (see the kind's ``stepper``)."""
        start = time.perf_counter()
        result = task.unit.run(self, task, on_step)
        result.seconds = time.perf_counter() - start
        return result

    def close(self) -> None:
        self.renderers.__exit__(None, None, None)

    # the photo unit's engines ---------------------------------------------------------------

    @property
    def activations(self) -> Activations:
        if self._activations is None:
            self._activations = Activations(self.model, list(self.job.layers), self.job.preprocess,
                                            self.job.input[0])
        return self._activations

    @property
    def curves(self) -> Curves:
        if self._curves is None:
            self._curves = Curves(self.model, self.job.preprocess, self.job.input[0], self.job.curve_points,
                                  fill=self.job.channels.fill())
        return self._curves

    def randomized(self, layer: str | None, method: str) -> Randomization:
        """``method``'s engines on the randomized copies, made once per worker; the copies once for all methods."""
        if self._copies is None:
            self._copies = Copies(self.model, self.job.randomize)
        if (layer, method) not in self._randomized:
            self._randomized[layer, method] = Randomization(self.model, layer, method, self.job.preprocess,
                                                            self.job.input[0], copies=self._copies)
        return self._randomized[layer, method]

    def caricaturist(self, layer: str) -> CaricatureRenderer:
        """The caricature renderer of ``layer``, made once, with the filter tiles' settings."""
        if layer not in self._caricaturists:
            self._caricaturists[layer] = CaricatureRenderer(self.model, layer, self.job.render, self.job.preprocess)
        return self._caricaturists[layer]

    def cam(self, layer: str | None, method: str):
        """The engine of ``method`` at ``layer`` (``None`` for the layer-free methods), made once."""
        if (layer, method) not in self._cams:
            self._cams[layer, method] = explainer(self.model, layer, method, self.job.preprocess, self.job.input[0])
        return self._cams[layer, method]
