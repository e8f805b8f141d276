"""Running one unit: what every executor calls, in-process or on a remote worker.

A :class:`Worker` holds one loaded model for many units: the renderers keep their
compiled loops and the photo analysis its compiled passes. It reads no cache and writes
no file: it returns the entries' bytes and metadata, and the driver alone writes them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .. import channels as bands, imaging
from ..console import warn
from ..errors import GalleryError
from ..model import grad
from ..photos.activations import Activations
from ..photos.explain import explainer
from ..photos.examples import peaks
from ..photos.faithfulness import KEEP, Curves
from ..photos.saliency import PixelEngine
from ..photos.sanity import Copies, Randomization
from ..render.caricature import CaricatureRenderer
from ..render.optimize import Renderers
from ..render.schedule import snapshot_steps, spans
from .units import (BASELINE, PHOTO_SIDE, SANITY_SIDE, TRANSPARENCY_PERCENTILE, FilterUnit, Job, Task,
                    attribution_part, attributions, caricature_part, sanity_part)

TOP_STORED = 50  # predictions kept per photo, however many the pages show
TOP_CHANNELS = 12  # contributing channels kept per photo, class and CAM layer


@dataclass
class Result:
    produced: dict[str, tuple[bytes, dict]] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # photo position -> why it could not be read
    seconds: float = 0.0


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
        """Produce the entries of the passes ``task`` needs; ``on_step(image_steps)`` reports progress."""
        start = time.perf_counter()
        if isinstance(task.unit, FilterUnit):
            result = self._filters(task.unit, on_step)
        else:
            result = _PhotoRun(self, task, on_step).run()
        result.seconds = time.perf_counter() - start
        return result

    def close(self) -> None:
        self.renderers.__exit__(None, None, None)

    # filters -----------------------------------------------------------------------------

    def _filters(self, unit: FilterUnit, on_step) -> Result:
        renderer = self.renderers.ready(unit.variant, unit.layer)
        trajectories = [e for e in unit.entries if e.about["kind"] == "trajectory"]
        at = snapshot_steps(self.job.render, self.job.trajectory) if trajectories else ()
        images, maps, snapshots = self._render(renderer, list(unit.indices), on_step, at)
        tiles = [e for e in unit.entries if e.about["kind"] == "filter"]
        # Tiles run index by index, copy by copy: the order the renderer returns images in.
        means, peaks = renderer.scores(images, [e.slot[0] for e in tiles])
        channels = self.job.channels
        result = Result({entry.key: (tile_png(image, channels), {"activation": float(mean), "peak": float(peak)})
                         for entry, image, mean, peak in zip(tiles, images, means, peaks)})
        # Only the main variant gathers maps, one image per filter, in the order of the unit's indices.
        for n, entry in enumerate(e for e in unit.entries if e.about["kind"] == "transparency"):
            picture, scale = imaging.with_transparency(channels.view(images[n]), maps[n], TRANSPARENCY_PERCENTILE)
            result.produced[entry.key] = (imaging.encode_png(picture),
                                          {"scale": scale, "percentile": TRANSPARENCY_PERCENTILE})
        # And, where the view shows only some channels, every channel in grey (gallery.channels.strip).
        for n, entry in enumerate(e for e in unit.entries if e.about["kind"] == "bands"):
            result.produced[entry.key] = (imaging.encode_png(bands.strip(images[n])), {"channels": channels.count})
        # The main variant has one image per filter, in the order of the unit's indices.
        scored = [renderer.scores(taken, list(unit.indices)) for _, _, taken in snapshots]
        for n, entry in enumerate(trajectories):
            frames = channels.view(np.stack([taken[n] for _, _, taken in snapshots]))
            result.produced[entry.key] = (imaging.encode_animation(frames), {"snapshots": [
                {"step": step, "canvas": canvas, "activation": float(mean[n]), "peak": float(peak[n])}
                for (step, canvas, _), (mean, peak) in zip(snapshots, scored)]})
        return result

    def _render(self, renderer, indices, on_step, at=()):
        """``(images, transparency maps or None, [(step, canvas, images then)])``: rendered,
        and snapshots taken at the steps ``at``; the batch is halved while the device runs
        out of memory."""
        copies = renderer.variant.copies
        report = None if on_step is None else (lambda steps: on_step(steps * len(indices) * copies))
        snapshots = []
        try:
            images, maps = renderer.images_and_transparency(indices, on_step=report, snapshots=at,
                                                            on_snapshot=lambda *taken: snapshots.append(taken))
            return images, maps, snapshots
        except Exception as exc:
            if not grad.is_out_of_memory(exc) or len(indices) == 1:
                raise
        half = (len(indices) + 1) // 2
        warn(f"{renderer.layer_name}: out of device memory; rendering {half} filters at a time")
        parts = [self._render(renderer, indices[s:s + n], on_step, at) for s, n in spans(len(indices), half)]
        joined = [(step, canvas, np.concatenate([p[2][k][2] for p in parts]))
                  for k, (step, canvas, _) in enumerate(parts[0][2])]
        maps = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        return np.concatenate([p[0] for p in parts]), maps, joined

    # photos ------------------------------------------------------------------------------

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


class _PhotoRun:
    """One photo unit: each photo is decoded at most once, and only if a pass it needs runs."""

    def __init__(self, worker: Worker, task: Task, on_pass=None):
        self.worker, self.job, self.unit = worker, worker.job, task.unit
        self.on_pass = on_pass or (lambda part: None)  # told of each pass as it ends, for progress
        self.result = Result()
        self.need: dict[int, set] = {}  # photo position -> the parts it lost
        self.entries: dict[tuple, str] = {}  # slot -> key
        for entry in self.unit.entries:
            self.entries[(entry.part, *entry.slot)] = entry.key
            if entry.key in task.missing:
                self.need.setdefault(entry.slot[0], set()).add(entry.part)
        self._pixels: dict[int, np.ndarray] = {}
        self._shown: dict[int, np.ndarray] = {}

    def run(self) -> Result:
        for position in self.need:
            if "image" in self.need[position] and self.pixels(position) is not None:
                shown = self.shown(position)
                grey = self.job.channels.count == 1  # a grey model's photo is published grey
                self.put(("image", position), imaging.encode_jpeg(shown[..., 0] if grey else shown),
                         {"size": [shown.shape[1], shown.shape[0]]})
        self._features()
        self.on_pass("features")
        predictions = self._predictions()
        self.on_pass("predictions")
        if attributions(self.job):
            self._baseline(predictions)
            self.on_pass(BASELINE)
        for layer, method in attributions(self.job):
            self._cams(layer, method, predictions)
            self.on_pass(attribution_part(layer, method))
            if self.job.randomize:
                self._sanity(layer, method, predictions)
                self.on_pass(sanity_part(layer, method))
        for layer in self.job.caricatures:
            self._caricatures(layer)
            self.on_pass(caricature_part(layer))
        return self.result

    def put(self, slot, payload: bytes, meta: dict | None = None) -> None:
        self.result.produced[self.entries[slot]] = (payload, meta or {})

    def rows(self, part: str) -> list[int]:
        """Photos that lost an entry of ``part`` and can be read."""
        return [p for p in sorted(self.need) if part in self.need[p] and self.pixels(p) is not None]

    def pixels(self, position: int) -> np.ndarray | None:
        if position not in self._pixels and position not in self.result.skipped:
            photo = self.unit.photos[position - self.unit.start]
            channels = self.job.channels
            try:
                # The model's channels: a colour photo's luminance for a grey model (gallery.channels).
                self._pixels[position] = channels.photo(photo.read(bands=channels.banded), repr(photo.name))
            except GalleryError as exc:
                warn(f"skipping a photo: {exc}")
                self.result.skipped[position] = str(exc)
        return self._pixels.get(position)

    def shown(self, position: int) -> np.ndarray:
        """The photo as published (at most ``PHOTO_SIDE``), RGB (its view, for a model that does
        not take RGB: :meth:`gallery.channels.Channels.view`), made once per photo."""
        if position not in self._shown:
            pixels = self.pixels(position)
            h, w = pixels.shape[:2]
            scale = min(1.0, PHOTO_SIDE / max(h, w))
            self._shown[position] = self.job.channels.view(
                imaging.resize(pixels, max(1, round(h * scale)), max(1, round(w * scale))))
        return self._shown[position]

    def _features(self) -> None:
        """Peaks of every layer, and feature sheets for paged photos: one forward pass."""
        rows = self.rows("features")
        if not rows:
            return
        maps = self.worker.activations.feature_maps_batch([self.pixels(p) for p in rows])
        for n, position in enumerate(rows):
            for layer in self.job.layers:
                found = maps[layer][n]
                self.put(("features", position, layer, "peaks"), json.dumps(peaks(found)).encode("utf-8"))
                if self._paged(position):
                    sheet, cell = imaging.feature_sheet(found)
                    cols, height = imaging.sheet_layout(int(found.shape[-1]))
                    layout = {"cols": cols, "rows": height, "cell": cell, "channels": int(found.shape[-1])}
                    self.put(("features", position, layer, "sheet"), imaging.encode_png(sheet), layout)

    def _paged(self, position: int) -> bool:
        return self.unit.paged[position - self.unit.start]

    def _predictions(self) -> dict[int, list[int]]:
        """Each paged photo's classes, best first: computed where lost, else as cached."""
        classes = dict(self.unit.classes)
        rows = self.rows("predictions")
        if rows:
            for position, probs in zip(rows, self.worker.activations.predictions_batch([self.pixels(p) for p in rows])):
                order = np.argsort(-probs)[:TOP_STORED]
                top = [{"index": int(c), "probability": float(probs[c])} for c in order]
                self.put(("predictions", position), json.dumps(top).encode("utf-8"))
                classes[position] = [int(c) for c in order]
        return classes

    def _caricatures(self, layer: str) -> None:
        """The caricatures of the photos that lost theirs at ``layer``, optimized together."""
        rows = self.rows(caricature_part(layer))
        if not rows:
            return
        digests = [self.unit.photos[p - self.unit.start].digest for p in rows]
        images, cosines = self.worker.caricaturist(layer).caricatures([self.pixels(p) for p in rows], digests)
        for position, image, cos in zip(rows, images, cosines):
            self.put((caricature_part(layer), position, layer, "caricature"), imaging.encode_png(image),
                     {"cosine": float(cos)})

    def _cams(self, layer: str | None, method: str, classes: dict[int, list[int]]) -> None:
        part = attribution_part(layer, method)
        rows = self.rows(part)
        if not rows:
            return
        wanted = [classes[p][:self.job.ranks] for p in rows]
        photos = [self.pixels(p) for p in rows]
        engine = self.worker.cam(layer, method)
        if isinstance(engine, PixelEngine):
            # Pixel attributions are shown as pictures of their own (no channels weigh them),
            # and judged by their magnitude maps.
            found = engine.raw(photos, wanted)
            heats = engine.maps(photos, found)
            images = [engine.pictures(f, *self.shown(p).shape[:2], view=self.job.channels.view) for p, f in zip(rows, found)]
            contributions = [None] * len(rows)
        else:
            heats, contributions = engine.explain_batch(photos, wanted)
            images = [[imaging.overlay(self.shown(p), imaging.resize(m, *self.shown(p).shape[:2])) for m in heat]
                      for p, heat in zip(rows, heats)]
        # Every method's maps, whatever made them, are judged the same way (gallery.photos.faithfulness).
        x = self.worker.curves.x
        at_top, at_bottom = int(np.argmin(abs(x - KEEP))), int(np.argmin(abs(x - (1 - KEEP))))
        figures = self.worker.curves(photos, wanted, heats)
        for position, ranked, pictures, share, found in zip(rows, wanted, images, contributions, figures):
            for rank, (c, picture, deletion, insertion) in enumerate(
                    zip(ranked, pictures, found["deletion"], found["insertion"])):
                meta = {"class": int(c), "p": float(deletion[0]), "top": float(insertion[at_top]),
                        "bottom": float(deletion[at_bottom]), "deletion": deletion.tolist(),
                        "insertion": insertion.tolist()}
                self.put((part, position, layer, method, rank), imaging.encode_jpeg(picture), meta)
            if share is not None:
                order = np.argsort(-share[0])[:TOP_CHANNELS]
                top = [[int(c), round(float(share[0][c]), 5)] for c in order]
                self.put((part, position, layer, method), json.dumps(top).encode("utf-8"), {"class": int(ranked[0])})

    def _baseline(self, classes: dict[int, list[int]]) -> None:
        """The random-order curves of each paged photo's classes (:func:`~gallery.photos.faithfulness.random_map`)."""
        rows = self.rows(BASELINE)
        if not rows:
            return
        wanted = [classes[p][:self.job.ranks] for p in rows]
        for position, ranked, found in zip(rows, wanted, self.worker.curves([self.pixels(p) for p in rows], wanted)):
            for rank, (c, deletion, insertion) in enumerate(zip(ranked, found["deletion"], found["insertion"])):
                self.put((BASELINE, position, None, BASELINE, rank), b"",
                         {"class": int(c), "deletion": deletion.tolist(), "insertion": insertion.tolist()})

    def _sanity(self, layer: str | None, method: str, classes: dict[int, list[int]]) -> None:
        """The top class's map under each randomized copy, as a strip beside the trained map,
        with the figures comparing them (:mod:`gallery.photos.sanity`)."""
        part = sanity_part(layer, method)
        rows = self.rows(part)
        if not rows:
            return
        photos, top = [self.pixels(p) for p in rows], [classes[p][0] for p in rows]
        # The trained map made again, as the copies make theirs (the top class alone): a map
        # among other classes may differ in its last digits, and the figures must not depend
        # on whether the maps' own pass ran in the same unit.
        trained = [m[0] for m in self.worker.cam(layer, method).explain_batch(photos, [[c] for c in top])[0]]
        check = self.worker.randomized(layer, method)
        for position, c, base, (maps, figures) in zip(rows, top, trained, check(photos, top, trained)):
            strip = sanity_strip(self.shown(position), [base, *maps], layer is not None)
            self.put((part, position, layer, method, "sanity"), imaging.encode_jpeg(strip),
                     {"class": int(c), "layers": check.layers, **figures})


def sanity_strip(shown: np.ndarray, maps: list[np.ndarray], heat: bool, gap: int = 4) -> np.ndarray:
    """The trained map then each randomized one, :data:`SANITY_SIDE` high, side by side on
    white: heat maps over the photo (the CAM family), grey magnitudes for pixel methods."""
    h, w = shown.shape[:2]
    width = max(1, round(w * SANITY_SIDE / h))
    small = imaging.resize(shown, SANITY_SIDE, width)
    cells = [imaging.overlay(small, imaging.resize(m, SANITY_SIDE, width)) if heat
             else imaging.magnitude_image(imaging.resize(m, SANITY_SIDE, width)) for m in maps]
    spacer = np.full((SANITY_SIDE, gap, 3), 255, np.uint8)
    return np.concatenate([part for cell in cells for part in (cell, spacer)][:-1], axis=1)


def tile_png(image: np.ndarray, channels: bands.Channels) -> bytes:
    """A filter image as its PNG: RGB as it is, one channel as a grey PNG, others as their
    RGB view (every channel is kept beside it, as the ``bands`` entry's strip)."""
    if channels.count == 1:
        return imaging.encode_png(channels.grey(image))
    return imaging.encode_png(channels.view(image))
