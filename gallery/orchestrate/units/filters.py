"""The filter unit: one span of a layer's filters in one variant, rendered in one batch.

The kind owns all of it: the entries a unit names (its tiles, and the files each main tile
comes with, :class:`Artefact`), their keys, what a unit costs and its stages, how it runs
on a worker, and how its settled entries become the tiles the site shows
(:class:`FilterBoard`). A new file beside each filter image is an :class:`Artefact` here
and a field of :class:`FilterTile` named for its kind; nothing else in the orchestration
changes. Spans are cut from the settings alone, never from the executor or the number of
workers, so every executor renders the same batches and publishes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from ... import channels as bands, imaging
from ...console import warn
from ...model import grad
from ...render import cost
from ...render.objectives import VARIANTS
from ...render.schedule import snapshot_steps, spans, stages
from ..cache import make_key, number
from .common import MAIN, Entry, Job, Result, Unit, count

# How filter images are made, beyond the settings in their key: bump it whenever the same
# settings would give other pixels (a transform that changes meaning, a new loop), so old
# tiles are recomputed rather than reused by luck. Named in keys from 2 on, so the tiles of
# version 1 caches stay valid.
FILTER_ALGORITHM = 1
# The same for the images of layers linear in the pixels, named in their keys alone, so a
# change there re-renders only them: those solved in closed form (the neuron's), and the
# others, optimized on a rectified objective (gallery.render.objectives.rectified) since
# version 2 of these layers, where version 1 solved the channel and negative images exactly.
EXACT_VERSION = 1
LINEAR_VERSION = 2
# MACO's transparency map is published as its tile with the map for alpha, each pixel's weight
# over this percentile of the map's fully opaque (the display of Fel et al.'s own code, Horama's
# plot_maco): a few pixels dominate a gradient's magnitude, and a scale set by them would hide the rest.
TRANSPARENCY_PERCENTILE = 80.0
THUMB_SIDE = 96  # layer-page thumbnails, sized for their slot
FRAME_SIDE = 128  # a trajectory's frames, shown side by side on the filter page: the CPU tile's own size


# What the site shows of a filter ------------------------------------------------------------

@dataclass
class VariantImage:
    key: str
    activation: float
    peak: float | None = None  # None: a tile cached before peaks were recorded, not rescored


@dataclass
class Trajectory:
    key: str  # the animation
    frames: str  # its frames side by side, small
    snapshots: list[dict]  # [{"step", "canvas", "activation", "peak"}]


@dataclass
class Transparency:
    key: str  # MACO's transparency map, as alpha over the tile
    percentile: float  # the map's percentile above which the tile is opaque


@dataclass
class FilterTile:
    index: int
    key: str | None  # None while pending
    thumb: str | None
    activation: float | None
    variants: dict[str, list[VariantImage | None]] = field(default_factory=dict)  # None: a pending image
    peak: float | None = None
    # One field per artefact, named for its kind (what Artefact.absorb made of it; None until settled):
    trajectory: Trajectory | None = None
    transparency: Transparency | None = None
    bands: str | None = None  # every channel in grey, side by side, where the tile shows only some

    @property
    def pending(self) -> bool:
        return self.key is None


# What a unit's run made, as its entries read it ----------------------------------------------

class Rendered:
    """A unit's images, in the order the renderer returns them (index by index, copy by copy),
    their transparency maps, and the snapshots taken on the way; scored once, when asked."""

    def __init__(self, unit: FilterUnit, renderer, images, maps, snapshots, channels: bands.Channels):
        self.renderer, self.images, self.maps, self.snapshots = renderer, images, maps, snapshots
        self.indices, self.channels, self.copies = list(unit.indices), channels, renderer.variant.copies

    def position(self, index: int) -> int:
        return self.indices.index(index)

    @cached_property
    def scores(self):
        """``(means, peaks)`` of every image."""
        return self.renderer.scores(self.images, [i for i in self.indices for _ in range(self.copies)])

    @cached_property
    def scored(self) -> list:
        """``(means, peaks)`` of each snapshot: only the main variant takes them, one image per filter."""
        return [self.renderer.scores(taken, self.indices) for _, _, taken in self.snapshots]


# The files a main filter image comes with -------------------------------------------------------

class Artefact:
    """A file a main filter image comes with, made by the same optimization: when a unit
    names it, its key, what a run makes of it and what its :class:`FilterTile` field holds."""

    kind: str  # its entries' kind, and the FilterTile field it fills
    require: dict  # what its record must hold before it is used (see Cache.get)
    snapshots = False  # whether the optimization must take snapshots for it

    def wanted(self, job: Job, layer: str) -> bool:
        raise NotImplementedError

    def key(self, job: Job, layer: str, index: int) -> str:
        raise NotImplementedError

    def make(self, made: Rendered, n: int) -> tuple[bytes, dict]:
        """Its payload and record from the ``n``-th main image of the run."""
        raise NotImplementedError

    def absorb(self, key: str, payload: bytes, meta: dict, cache):
        """What the filter's tile shows of it."""
        return key


def _snapshots(value) -> bool:
    """A trajectory's record: per snapshot its step, canvas, mean activation and peak."""
    fields = {"step": count, "canvas": count, "activation": number, "peak": number}
    return isinstance(value, list) and len(value) >= 2 and all(
        isinstance(s, dict) and set(s) == set(fields) and all(check(s[k]) for k, check in fields.items())
        for s in value)


class _Transparency(Artefact):
    kind, require = "transparency", {"scale": number, "percentile": number}

    def wanted(self, job, layer):
        return job.transparent(layer, MAIN)

    def key(self, job, layer, index):
        """Named for the tile whose optimization gathered it, and how its map is made alpha."""
        return make_key(kind="transparency", source=filter_key(job, layer, index, MAIN, 0),
                        percentile=TRANSPARENCY_PERCENTILE)

    def make(self, made, n):
        picture, scale = imaging.with_transparency(made.channels.view(made.images[n]), made.maps[n],
                                                   TRANSPARENCY_PERCENTILE)
        return imaging.encode_png(picture), {"scale": scale, "percentile": TRANSPARENCY_PERCENTILE}

    def absorb(self, key, payload, meta, cache):
        return Transparency(key, float(meta["percentile"]))


class _Bands(Artefact):
    """Every channel of a main tile whose view shows only some (gallery.channels.strip)."""

    kind, require = "bands", {"channels": count}

    def wanted(self, job, layer):
        return job.channels.banded

    def key(self, job, layer, index):
        return make_key(kind="bands", source=filter_key(job, layer, index, MAIN, 0))

    def make(self, made, n):
        return imaging.encode_png(bands.strip(made.images[n])), {"channels": made.channels.count}


class _Trajectory(Artefact):
    """The optimization's path, as an animation of the snapshots it took."""

    kind, require, snapshots = "trajectory", {"snapshots": _snapshots}, True

    def wanted(self, job, layer):
        return bool(job.trajectory) and not job.solved(layer, MAIN)  # a solved tile has no path to show

    def key(self, job, layer, index):
        """Named for the tile whose optimization it records and the steps it was taken at."""
        return make_key(kind="trajectory", source=filter_key(job, layer, index, MAIN, 0),
                        steps=snapshot_steps(job.render, job.trajectory))

    def make(self, made, n):
        frames = made.channels.view(np.stack([taken[n] for _, _, taken in made.snapshots]))
        return imaging.encode_animation(frames), {"snapshots": [
            {"step": step, "canvas": canvas, "activation": float(mean[n]), "peak": float(peak[n])}
            for (step, canvas, _), (mean, peak) in zip(made.snapshots, made.scored)]}

    def absorb(self, key, payload, meta, cache):
        return Trajectory(key, _frames(key, payload, cache), meta["snapshots"])


TRANSPARENCY, BANDS, TRAJECTORY = _Transparency(), _Bands(), _Trajectory()
ARTEFACTS = (TRANSPARENCY, BANDS, TRAJECTORY)  # in the order a unit names them


# Where each entry goes -------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """A filter image: copy ``copy`` of filter ``index``, in its unit's variant."""

    index: int
    copy: int = 0
    kind: ClassVar[str] = "filter"
    # A filter's "peak" is not required: tiles cached before it was recorded get it from their
    # saved pixels (gallery.orchestrate.legacy), without rendering them again.
    require: ClassVar[dict] = {"activation": number}
    snapshots: ClassVar[bool] = False

    def make(self, made: Rendered) -> tuple[bytes, dict]:
        n = made.position(self.index) * made.copies + self.copy
        means, peaks = made.scores
        return tile_png(made.images[n], made.channels), {"activation": float(means[n]), "peak": float(peaks[n])}

    def absorb(self, board: FilterBoard, unit: FilterUnit, key: str, payload: bytes, meta: dict, cache) -> None:
        peak = meta.get("peak")
        board.images[(unit.layer, self.index, unit.variant, self.copy)] = VariantImage(
            key, float(meta["activation"]), None if peak is None else float(peak))
        if unit.variant == MAIN:
            board.thumbs[(unit.layer, self.index)] = _thumb(key, payload, cache)


@dataclass(frozen=True)
class Beside:
    """An artefact of filter ``index``'s main image."""

    index: int
    artefact: Artefact

    @property
    def kind(self) -> str:
        return self.artefact.kind

    @property
    def require(self) -> dict:
        return self.artefact.require

    @property
    def snapshots(self) -> bool:
        return self.artefact.snapshots

    def make(self, made: Rendered) -> tuple[bytes, dict]:
        return self.artefact.make(made, made.position(self.index))

    def absorb(self, board: FilterBoard, unit: FilterUnit, key: str, payload: bytes, meta: dict, cache) -> None:
        board.extras.setdefault((unit.layer, self.index), {})[self.kind] = self.artefact.absorb(key, payload, meta, cache)


# The unit --------------------------------------------------------------------------------

@dataclass
class FilterUnit(Unit):
    variant: str
    layer: str
    indices: tuple[int, ...]
    entries: tuple[Entry, ...]
    first_look: bool = False
    photos: ClassVar[tuple] = ()  # a filter unit reads none

    @property
    def name(self) -> str:
        extra = "" if self.variant == MAIN else f" ({self.variant})"
        return f"{self.layer} filters {self.indices[0]}–{self.indices[-1]}{extra}"

    @property
    def images(self) -> int:
        """Filter images rendered: artefacts come from the same optimization."""
        return len(self.indices) * VARIANTS[self.variant].copies

    @property
    def tiles(self) -> tuple[Entry, ...]:
        """The entries of its images: they come first, their artefacts after them (see :func:`_entries`)."""
        return self.entries[:self.images]

    def optimizes(self, job: Job) -> bool:
        """Whether its images are optimized (not solved in closed form, which costs almost nothing)."""
        return not job.solved(self.layer, self.variant)

    def flops(self, job: Job, costs) -> float:
        """What running it costs, in FLOPs (see :mod:`gallery.render.cost`)."""
        if not self.optimizes(job):
            return sum(f * n for _, f, n in self.stages(job, costs)[0])
        return cost.total_flops(costs, job.render, self.layer, self.images)

    def stages(self, job: Job, costs, parts=None) -> tuple:
        """``(stages, images, photos, optimized)`` as :class:`~gallery.orchestrate.progress.Progress`
        counts them: the stages of the coarse-to-fine schedule; an image solved exactly costs
        one gradient pass at full size."""
        optimized = self.optimizes(job)
        plan = stages(job.render.steps, job.render.size, job.render.scales) if optimized else [(job.render.size, 1)]
        return ([((self.layer, canvas), self.images * costs.step_flops(self.layer, cost.network_side(job.render, canvas)),
                  n) for canvas, n in plan], self.images, 0, optimized)

    def stepper(self, uid, progress):
        """``on_step(image_steps)``: the steps its images have taken so far."""
        done = [0]

        def on_step(image_steps: int) -> None:
            done[0] += image_steps
            progress.steps(uid, done[0] // self.images)

        return on_step

    def run(self, worker, task, on_step=None) -> Result:
        """Render the span on ``worker`` and make every entry from it; ``on_step(image_steps)`` reports progress."""
        renderer = worker.renderers.ready(self.variant, self.layer)
        job = worker.job
        at = snapshot_steps(job.render, job.trajectory) if any(e.slot.snapshots for e in self.entries) else ()
        images, maps, snapshots = _render(renderer, list(self.indices), on_step, at)
        made = Rendered(self, renderer, images, maps, snapshots, job.channels)
        return Result({entry.key: entry.slot.make(made) for entry in self.entries})

    def absorb(self, gallery, found: dict, cache, skipped=()) -> None:
        for entry in self.entries:
            entry.slot.absorb(gallery.filters, self, entry.key, *found[entry.key], cache)

    def unscored(self, found: dict) -> list[Entry]:
        if self.variant != MAIN:
            return []
        return [e for e in self.tiles if e.key in found and "peak" not in found[e.key][1]]


def filter_units(job: Job) -> list[FilterUnit]:
    """Every filter unit, in the order a person wants to see them: the first span of each
    layer (a first look at all of them), then the rest layer by layer, then the variants."""
    first, rest, extra = [], [], []
    for variant in job.kinds:
        per_batch = max(1, job.render.batch // VARIANTS[variant].copies)
        for layer, indices in job.selection.items():
            for n, (start, length) in enumerate(spans(len(indices), per_batch)):
                chosen = tuple(indices[start:start + length])
                unit = FilterUnit(variant, layer, chosen, _entries(job, variant, layer, chosen),
                                  first_look=variant == MAIN and n == 0)
                (first if unit.first_look else rest if variant == MAIN else extra).append(unit)
    return first + rest + extra


def filter_key(job: Job, layer: str, index: int, variant: str, copy: int) -> str:
    version = {"algorithm": FILTER_ALGORITHM} if FILTER_ALGORITHM != 1 else {}
    if job.solved(layer, variant):  # only these tiles changed when they came to be solved exactly
        version["exact"] = EXACT_VERSION
    elif layer in job.exact:  # and only these when they came to be optimized on rectified means
        version["linear"] = LINEAR_VERSION
    return make_key(kind="filter", model=job.fingerprint, layer=layer, filter=index, variant=variant, copy=copy,
                    preprocess=job.preprocess, **job.settings(layer).key(), **version,
                    **job.channels.key())


def _entries(job, variant, layer, indices) -> tuple[Entry, ...]:
    about = {"kind": "filter", "model": job.fingerprint, "layer": layer}
    tiles = [Entry(filter_key(job, layer, i, variant, c), "render", about, Tile(i, c))
             for i in indices for c in range(VARIANTS[variant].copies)]
    if variant == MAIN:
        tiles += [Entry(a.key(job, layer, i), "render", {**about, "kind": a.kind}, Beside(i, a))
                  for a in ARTEFACTS if a.wanted(job, layer) for i in indices]
    return tuple(tiles)


def _render(renderer, indices, on_step, at=()):
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
    parts = [_render(renderer, indices[s:s + n], on_step, at) for s, n in spans(len(indices), half)]
    joined = [(step, canvas, np.concatenate([p[2][k][2] for p in parts]))
              for k, (step, canvas, _) in enumerate(parts[0][2])]
    maps = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
    return np.concatenate([p[0] for p in parts]), maps, joined


def tile_png(image: np.ndarray, channels: bands.Channels) -> bytes:
    """A filter image as its PNG: RGB as it is, one channel as a grey PNG, others as their
    RGB view (every channel is kept beside it, as the ``bands`` entry's strip)."""
    if channels.count == 1:
        return imaging.encode_png(channels.grey(image))
    return imaging.encode_png(channels.view(image))


# What the build knows of its filters ------------------------------------------------------

class FilterBoard:
    """The settled entries of the filter units, as the tiles the site shows."""

    def __init__(self, job: Job):
        self.job = job
        self.images: dict[tuple, VariantImage] = {}  # (layer, index, variant, copy) -> image
        self.thumbs: dict[tuple[str, int], str] = {}
        self.extras: dict[tuple[str, int], dict] = {}  # (layer, index) -> {artefact kind: what its tile shows}
        self._collages: dict[str, str] = {}  # layer -> key, once every filter of it is rendered

    def tiles(self) -> dict[str, list[FilterTile]]:
        """``{layer: [FilterTile]}`` for every selected filter, pending ones included."""
        result = {}
        for layer, indices in self.job.selection.items():
            tiles = []
            for i in indices:
                main = self.images.get((layer, i, MAIN, 0))
                variants = {v: [self.images.get((layer, i, v, c)) for c in range(VARIANTS[v].copies)]
                            for v in self.job.kinds[1:]}
                tiles.append(FilterTile(i, main and main.key, self.thumbs.get((layer, i)), main and main.activation,
                                        variants, main and main.peak, **self.extras.get((layer, i), {})))
            result[layer] = tiles
        return result

    @property
    def total(self) -> int:
        """Filter images the build shows, settled or not."""
        return sum(len(v) for v in self.job.selection.values()) * sum(VARIANTS[k].copies for k in self.job.kinds)

    def collages(self, cache) -> dict[str, str]:
        """``{layer: key}``: one image of every selected filter of each finished layer, its
        thumbnails labelled with their indices, made once and cached."""
        for layer, indices in self.job.selection.items():
            if layer in self._collages:
                continue
            keys = [self.thumbs.get((layer, i)) for i in indices]
            if None in keys:
                continue
            key = make_key(kind="collage", thumbs=keys, filters=list(indices))
            if cache.get(key) is None:
                found = [cache.get(k) for k in keys]
                if None in found:  # a thumbnail lost mid-build: its unit reruns, the collage waits
                    continue
                cells = np.stack([imaging.decode(payload) for payload, _ in found])
                sheet = imaging.labelled_sheet(cells, [f"#{i}" for i in indices])
                cache.put(key, imaging.encode_jpeg(sheet, quality=90), about={"kind": "collage", "layer": layer})
            self._collages[layer] = key
        return dict(self._collages)


def _thumb(source: str, png: bytes, cache) -> str:
    """A filter image's thumbnail, made from the image's bytes unless cached."""
    key = make_key(kind="thumb", source=source, side=THUMB_SIDE)
    if cache.get(key) is None:
        small = imaging.resize(imaging.decode(png), THUMB_SIDE, THUMB_SIDE)
        cache.put(key, imaging.encode_jpeg(small, quality=85), about={"kind": "thumb"})
    return key


def _frames(source: str, animation: bytes, cache) -> str:
    """An animation's frames in one row, small, so a page can show each one still."""
    key = make_key(kind="frames", source=source, side=FRAME_SIDE)
    if cache.get(key) is None:
        row = [imaging.resize(frame, FRAME_SIDE, FRAME_SIDE) for frame in imaging.decode_frames(animation)]
        cache.put(key, imaging.encode_jpeg(np.concatenate(row, axis=1), quality=88), about={"kind": "frames"})
    return key
