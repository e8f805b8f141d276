"""The photo unit: one batch of photos, analysed in one forward pass per kind of work.

The kind owns all of it: the entries a unit names, each at a named slot, what a unit costs
and its passes, how it runs on a worker (:class:`_PhotoRun`, each photo decoded at most
once and only if a pass it needs runs), and how its settled entries become the photos the
site shows (:class:`PhotoBoard`). Batches are cut from the settings alone, as filter spans are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from ... import attribution, imaging
from ...console import warn
from ...errors import GalleryError
from ...photos import cams, faithfulness, saliency, sanity
from ...photos.activations import ROWS
from ...photos.examples import TopExamples, peaks
from ...photos.explain import WEIGHED
from ...photos.faithfulness import KEEP
from ...photos.saliency import PixelEngine
from ...render import cost
from ...render.schedule import spans
from ..cache import make_key, number
from .common import Entry, Job, Result, Task, Unit, count

PHOTO_SIDE = 640  # photos are published no larger than this
PHOTO_BATCH = 8  # photos per unit: one forward pass
BASELINE = "baseline"  # the pass of the random-order curves: an entry per paged photo and class
SANITY_SIDE = 96  # the height of each map in a randomization strip
TOP_STORED = 50  # predictions kept per photo, however many the pages show
TOP_CHANNELS = 12  # contributing channels kept per photo, class and CAM layer


def _probability(value) -> bool:
    return number(value) and 0 <= value <= 1


def _curve(value) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(map(_probability, value))


def _figures(value) -> bool:
    return isinstance(value, list) and len(value) >= 1 and all(number(v) for v in value)


def _size(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(count, value)) and all(value)


# Where each entry goes: a slot per kind of entry, each with what its record must hold
# before it is used (see Cache.get; None: nothing beyond its seal). Slots of one shape
# share it, and still differ by kind: a photo's peaks are not its feature sheet.

@dataclass(frozen=True)
class _OfPhoto:
    position: int  # in the build's photo list


@dataclass(frozen=True)
class _AtLayer:
    position: int
    layer: str


@dataclass(frozen=True)
class _OfGroup:
    """Of one group of maps: a method at a layer (``None`` for the layer-free methods)."""

    position: int
    layer: str | None
    method: str


class Shown(_OfPhoto):
    """The photo as published."""

    kind, require = "photo", {"size": _size}


class Predictions(_OfPhoto):
    kind, require = "predictions", None


class Peaks(_AtLayer):
    kind, require = "peaks", None


class Sheet(_AtLayer):
    """A paged photo's feature maps at one layer."""

    kind, require = "features", {name: count for name in ("cols", "rows", "cell", "channels")}


class Caricature(_AtLayer):
    kind, require = "caricature", {"cosine": number}


class Shares(_OfGroup):
    """The top class's channel contributions, for the methods that weigh channels."""

    kind, require = "contributions", {"class": count}


class Sanity(_OfGroup):
    """The randomization check of the group's top-class map."""

    kind = "sanity"
    require = {"class": count, "spearman": _figures, "ssim": _figures, "layers": lambda v: isinstance(v, list)}


@dataclass(frozen=True)
class Baseline:
    """The random-order curves a class's maps are read against."""

    position: int
    rank: int
    kind: ClassVar[str] = "baseline"
    require: ClassVar[dict] = {"class": count, "deletion": _curve, "insertion": _curve}


@dataclass(frozen=True)
class Map:
    """One class's map by one group's method."""

    position: int
    layer: str | None
    method: str
    rank: int
    kind: ClassVar[str] = "cam"
    require: ClassVar[dict] = {"class": count, "p": _probability, "top": _probability, "bottom": _probability,
                               "deletion": _curve, "insertion": _curve}


# The unit --------------------------------------------------------------------------------

@dataclass
class PhotoUnit(Unit):
    start: int  # the first photo's position in the build
    photos: tuple  # Photo objects (bytes-backed when the unit travels)
    paged: tuple[bool, ...]
    entries: tuple[Entry, ...]
    classes: dict[int, list[int]] = field(default_factory=dict)  # cached predictions, for CAM passes
    images: ClassVar[int] = 0  # it renders no filter image

    @property
    def name(self) -> str:
        return f"photos {self.start + 1}–{self.start + len(self.photos)}"

    def optimizes(self, job: Job) -> bool:
        return False

    def passes(self, job: Job, costs, parts=None) -> list[tuple[str, float]]:
        """``[(part, FLOPs)]`` of its passes, in the order a worker runs them
        (:class:`_PhotoRun`); ``parts``: only those (the ones a task lost)."""
        forward = costs.forward_flops(job.input[0])
        paged = sum(self.paged)
        passes = [("features", len(self.photos)), ("predictions", paged)]
        curves = curve_forwards(job.curve_points, job.ranks)
        if attributions(job):  # one random order serves every class of a photo
            passes.append((BASELINE, paged * curve_forwards(job.curve_points, 1)))
        for layer, method in attributions(job):
            # Each map: its method's passes, then its curves' masked copies. Score-CAM runs one
            # forward per channel of its layer, in padded batches: by far the costliest method on a wide layer.
            passes.append((attribution_part(layer, method), paged * (_own(costs, layer, method, job.ranks) + curves)))
            if job.randomize and job.ranks:  # the top class's map again, under each randomized copy
                passes.append((sanity_part(layer, method), paged * _own(costs, layer, method, 1) * (job.randomize + 1)))
        flops = [(part, n * forward) for part, n in passes]
        # A caricature is optimized like a filter tile, its photo stepped beside it: two images,
        # in batches padded to whole ROWS (gallery.render.caricature).
        drawn = -(-paged // ROWS) * ROWS
        flops += [(caricature_part(layer), cost.total_flops(costs, job.render, layer, 2 * drawn))
                  for layer in job.caricatures]
        return [(part, f) for part, f in flops if f and (parts is None or part in parts)]

    def flops(self, job: Job, costs) -> float:
        """What running it costs, in FLOPs (see :mod:`gallery.render.cost`)."""
        return sum(f for _, f in self.passes(job, costs))

    def stages(self, job: Job, costs, parts=None) -> tuple:
        """``(stages, images, photos, optimized)`` as :class:`~gallery.orchestrate.progress.Progress`
        counts them: its passes (``parts``: those that run), one step each."""
        stages_ = [(("photos", part), f, 1) for part, f in self.passes(job, costs, parts)]
        return stages_ or [(("photos", "image"), 0.0, 1)], 0, len(self.photos), False

    def stepper(self, uid, progress):
        """``on_step(part)``: a pass it has finished."""
        return lambda part: progress.passed(uid, part)

    def run(self, worker, task, on_step=None) -> Result:
        """Produce the entries of the passes ``task`` needs on ``worker``; ``on_step(part)`` after each pass."""
        return _PhotoRun(worker, task, on_step).run()

    def resume(self, found: dict) -> None:
        for entry in self.entries:  # a CAM pass whose predictions are cached starts from them
            if entry.part == "predictions" and entry.key in found:
                self.classes[entry.slot.position] = [p["index"] for p in json.loads(found[entry.key][0])]

    def unread(self, skipped) -> set[str]:
        return {e.key for e in self.entries if e.slot.position in skipped}

    def portable(self) -> PhotoUnit:
        """Its photos carry their files' bytes, not local paths."""
        return replace(self, photos=tuple(p.portable() for p in self.photos))

    def absorb(self, gallery, found: dict, cache, skipped=()) -> None:
        gallery.photos.absorb(self, found, set(skipped))


def photo_units(job: Job, photos, pages: int | None, classify: bool) -> list[PhotoUnit]:
    """The photos in batches; the first ``pages`` (all, for ``None``) get a page each."""
    units = []
    for start, length in spans(len(photos), PHOTO_BATCH):
        batch = tuple(photos[start:start + length])
        paged = tuple(pages is None or start + i < pages for i in range(length))
        entries = [e for i, photo in enumerate(batch) for e in _entries(job, start + i, photo, paged[i], classify)]
        units.append(PhotoUnit(start, batch, paged, tuple(entries)))
    return units


def _entries(job: Job, position: int, photo, paged: bool, classify: bool):
    model = {"model": job.fingerprint}
    # The photo as shown: in the model's channels (grey for one), so named for them unless RGB.
    yield Entry(make_key(kind="photo", photo=photo.digest, side=PHOTO_SIDE, **job.channels.key()), "image",
                {"kind": "photo"}, Shown(position))
    for layer in job.layers:
        yield Entry(job.photo_key("peaks", photo.digest, layer=layer), "features", {"kind": "peaks", **model},
                    Peaks(position, layer))
        if paged:
            yield Entry(job.photo_key("features", photo.digest, layer=layer), "features",
                        {"kind": "features", **model}, Sheet(position, layer))
    if paged:
        for layer in job.caricatures:
            yield Entry(job.caricature_key(photo.digest, layer), caricature_part(layer),
                        {"kind": "caricature", **model, "layer": layer}, Caricature(position, layer))
    if not (paged and classify):
        return
    yield Entry(job.photo_key("predictions", photo.digest), "predictions", {"kind": "predictions", **model},
                Predictions(position))
    curve = {"curve": job.curve_points}  # the curves' steps; their fill and tie rule are PHOTO_SCHEMA's
    if attributions(job):
        for rank in range(job.ranks):  # the random-order curves every map of a class is read against
            yield Entry(job.photo_key("baseline", photo.digest, rank=rank, **curve, grid=faithfulness.RANDOM_GRID,
                                      seed=faithfulness.RANDOM_SEED), BASELINE, {"kind": "baseline", **model},
                        Baseline(position, rank))
    for layer, method in attributions(job):
        part = attribution_part(layer, method)
        where = {"layer": layer} if layer is not None else saliency.key_parts(method)
        for rank in range(job.ranks):
            yield Entry(job.photo_key("cam", photo.digest, **where, method=method, rank=rank, **curve), part,
                        {"kind": "cam", **model}, Map(position, layer, method, rank))
        if method in WEIGHED:
            yield Entry(job.photo_key("contributions", photo.digest, layer=layer, method=method), part,
                        {"kind": "contributions", **model}, Shares(position, layer, method))
        if job.randomize and job.ranks:
            key = job.photo_key("sanity", photo.digest, **where, method=method, levels=job.randomize,
                                seed=sanity.SEED, scheme=sanity.SCHEME, strip=SANITY_SIDE)
            yield Entry(key, sanity_part(layer, method), {"kind": "sanity", **model}, Sanity(position, layer, method))


def attributions(job: Job) -> list[tuple[str | None, str]]:
    """``(layer, method)`` of each group of maps a paged photo gets: the layer-free pixel
    methods (saliency, SmoothGrad) once, with layer ``None``; the others at each CAM layer."""
    free = [(None, method) for method in job.methods if method in saliency.LAYER_FREE]
    return free + [(layer, method) for layer in job.cam_layers for method in job.methods
                   if method not in saliency.LAYER_FREE]


def caricature_part(layer: str) -> str:
    """The pass that draws the caricatures of one layer (one optimization per photo unit)."""
    return f"caricature:{layer}"


def attribution_part(layer: str | None, method: str) -> str:
    """The pass that computes one group of maps (and its channel contributions)."""
    return f"cam:{layer}:{method}" if layer is not None else f"pixels:{method}"


def sanity_part(layer: str | None, method: str) -> str:
    """The pass that checks one group's top-class map under the randomized copies."""
    return f"sanity:{attribution_part(layer, method)}"


def _own(costs, layer: str | None, method: str, classes: int) -> float:
    """Forward passes of one photo's maps of ``classes`` classes (a backward pass costs about two)."""
    if method in saliency.PIXEL_METHODS:
        return saliency.forward_passes(method, classes)
    if method == "scorecam":
        return 1 + -(-costs.channels(layer) // cams.MASK_BATCH) * cams.MASK_BATCH
    return 2


def curve_forwards(points: int, classes: int) -> int:
    """Forward passes of one photo's deletion and insertion curves for ``classes`` maps."""
    return 2 + 2 * (len(attribution.fractions(points)) - 2) * classes


# How it runs on a worker --------------------------------------------------------------------

class _PhotoRun:
    """One photo unit: each photo is decoded at most once, and only if a pass it needs runs."""

    def __init__(self, worker, task: Task, on_pass=None):
        self.worker, self.job, self.unit = worker, worker.job, task.unit
        self.on_pass = on_pass or (lambda part: None)  # told of each pass as it ends, for progress
        self.result = Result()
        self.need: dict[int, set] = {}  # photo position -> the parts it lost
        self.entries: dict[object, str] = {}  # slot -> key
        for entry in self.unit.entries:
            self.entries[entry.slot] = entry.key
            if entry.key in task.missing:
                self.need.setdefault(entry.slot.position, set()).add(entry.part)
        self._pixels: dict[int, np.ndarray] = {}
        self._shown: dict[int, np.ndarray] = {}

    def run(self) -> Result:
        for position in self.need:
            if "image" in self.need[position] and self.pixels(position) is not None:
                shown = self.shown(position)
                grey = self.job.channels.count == 1  # a grey model's photo is published grey
                self.put(Shown(position), imaging.encode_jpeg(shown[..., 0] if grey else shown),
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
                self.put(Peaks(position, layer), json.dumps(peaks(found)).encode("utf-8"))
                if self._paged(position):
                    sheet, cell = imaging.feature_sheet(found)
                    cols, height = imaging.sheet_layout(int(found.shape[-1]))
                    layout = {"cols": cols, "rows": height, "cell": cell, "channels": int(found.shape[-1])}
                    self.put(Sheet(position, layer), imaging.encode_png(sheet), layout)

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
                self.put(Predictions(position), json.dumps(top).encode("utf-8"))
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
            self.put(Caricature(position, layer), imaging.encode_png(image), {"cosine": float(cos)})

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
                self.put(Map(position, layer, method, rank), imaging.encode_jpeg(picture), meta)
            if share is not None:
                order = np.argsort(-share[0])[:TOP_CHANNELS]
                top = [[int(c), round(float(share[0][c]), 5)] for c in order]
                self.put(Shares(position, layer, method), json.dumps(top).encode("utf-8"), {"class": int(ranked[0])})

    def _baseline(self, classes: dict[int, list[int]]) -> None:
        """The random-order curves of each paged photo's classes (:func:`~gallery.photos.faithfulness.random_map`)."""
        rows = self.rows(BASELINE)
        if not rows:
            return
        wanted = [classes[p][:self.job.ranks] for p in rows]
        for position, ranked, found in zip(rows, wanted, self.worker.curves([self.pixels(p) for p in rows], wanted)):
            for rank, (c, deletion, insertion) in enumerate(zip(ranked, found["deletion"], found["insertion"])):
                self.put(Baseline(position, rank), b"",
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
            self.put(Sanity(position, layer, method), imaging.encode_jpeg(strip),
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


# What the build knows of its photos -------------------------------------------------------------

@dataclass
class PhotoTiles:
    name: str
    image_key: str | None  # None while pending
    size: tuple[int, int]  # published (width, height)
    paged: bool = False
    predictions: list[dict] = field(default_factory=list)  # [{"index", "probability"}]
    features: dict[str, tuple[str, dict]] = field(default_factory=dict)  # layer -> (key, layout with peaks)
    cams: list[dict] = field(default_factory=list)  # [{"layer" (None: pixel-space), "method", "class", "key", "p", "top", "bottom"}]
    contributions: dict[str, list] = field(default_factory=dict)  # layer -> [(channel, share)] for the top class
    baselines: list[dict] = field(default_factory=list)  # per rank: the random-order curves {"class", "deletion", "insertion"}
    sanity: list[dict] = field(default_factory=list)  # per group: {"layer", "method", "key", "class", "layers", "spearman", "ssim"}
    position: int = 0  # in the build's photo list: what top lists refer to
    caricatures: dict[str, dict] = field(default_factory=dict)  # layer -> {"key", "cosine"}

    @property
    def pending(self) -> bool:
        return self.image_key is None


@dataclass
class PhotoResults:
    photos: list[PhotoTiles]  # every photo not known to be unreadable, in order
    examples: TopExamples


class PhotoBoard:
    """The settled entries of the photo units, as the photos the site shows. Top photos are
    merged as photos arrive (see :class:`TopExamples`), and a photo's peaks are dropped once
    merged unless it has a page, so memory does not grow with the number of photos."""

    def __init__(self, job: Job, photos, pages: int | None, top_k: int, examples: int):
        self.job, self.photos, self.top_k = job, list(photos), top_k
        self.paged = [pages is None or i < pages for i in range(len(self.photos))]
        self.tiles: dict[int, PhotoTiles] = {}  # settled photos, by position
        self.broken: set[int] = set()
        self.examples = TopExamples(examples)

    def absorb(self, unit: PhotoUnit, found: dict, skipped: set[int]) -> None:
        by_slot = {e.slot: e.key for e in unit.entries}
        for i, photo in enumerate(unit.photos):
            position = unit.start + i
            if position in skipped:
                self.broken.add(position)
                continue
            image = by_slot[Shown(position)]
            tiles = PhotoTiles(photo.name, image, tuple(found[image][1]["size"]), unit.paged[i], position=position)
            for layer in self.job.layers:
                top = json.loads(found[by_slot[Peaks(position, layer)]][0])
                self.examples.add(layer, position, top)
                sheet = by_slot.get(Sheet(position, layer))
                if sheet is not None:
                    tiles.features[layer] = (sheet, {**found[sheet][1], **top})
            for layer in self.job.caricatures:
                key = by_slot.get(Caricature(position, layer))
                if key is not None:  # a paged photo's
                    tiles.caricatures[layer] = {"key": key, "cosine": float(found[key][1]["cosine"])}
            predictions = by_slot.get(Predictions(position))
            if predictions is not None:
                tiles.predictions = json.loads(found[predictions][0])[:self.top_k]
                self._cams(tiles, by_slot, found)
            self.tiles[position] = tiles

    def _cams(self, tiles: PhotoTiles, by_slot: dict, found: dict) -> None:
        position = tiles.position
        ranks = range(min(self.job.ranks, len(tiles.predictions)))
        if attributions(self.job):
            tiles.baselines = [found[by_slot[Baseline(position, rank)]][1] for rank in ranks]
        for layer, method in attributions(self.job):
            for rank in ranks:
                key = by_slot[Map(position, layer, method, rank)]
                meta = found[key][1]
                tiles.cams.append({"layer": layer, "method": method, "key": key,
                                   **{k: meta[k] for k in ("class", "p", "top", "bottom", "deletion", "insertion")}})
            check = by_slot.get(Sanity(position, layer, method))
            if check is not None:
                tiles.sanity.append({"layer": layer, "method": method, "key": check, **found[check][1]})
            shares = by_slot.get(Shares(position, layer, method))  # the first method that weighs channels
            if shares is not None and layer not in tiles.contributions:
                tiles.contributions[layer] = json.loads(found[shares][0])

    def results(self) -> PhotoResults:
        """Every photo not known to be unreadable; pending ones carry their name alone.

        A photo that is not readable turns up only once its unit runs, so it may be listed
        (as pending) on early refreshes; it is gone from the final site.
        """
        photos = []
        for position, photo in enumerate(self.photos):
            if position in self.broken:
                continue
            photos.append(self.tiles.get(position) or PhotoTiles(photo.name, None, (1, 1), self.paged[position],
                                                                  position=position))
        return PhotoResults(photos, self.examples)

    @property
    def settled(self) -> bool:
        return len(self.tiles) + len(self.broken) == len(self.photos)
