"""A build as independent units of work, and the one place that settles them with the cache.

A unit is a pure function of (model, settings, unit): a *filter unit* renders one span
of a layer's filters in one variant; a *photo unit* analyses one batch of photos. Its
output is the cache entries it names up front. Spans and batches are cut from the
settings alone, never from the executor or the number of workers, so every executor
renders the same batches and publishes the same bytes.

Settling a unit (:func:`lookup`, then :func:`store`) is the only place that knows how
shared passes meet the cache: every entry of a unit is looked up, past any miss; a unit
whose entries are all intact is never scheduled; one that lost any entry runs the passes
that produce the lost ones; and only what was lost is written back.
"""

from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass, field

from .. import attribution
from ..channels import RGB, Channels
from ..config import RenderSettings
from ..photos import cams, faithfulness, saliency, sanity
from ..photos.activations import ROWS
from ..photos.explain import WEIGHED
from ..render.caricature import COSINE_POWER
from ..render.objectives import VARIANTS
from ..render import cost, exact, params
from ..render.schedule import snapshot_steps, spans, stages
from .cache import make_key, number

MAIN = "channel"  # the variant every filter gets; the others are extra images
PHOTO_SIDE = 640  # photos are published no larger than this
PHOTO_BATCH = 8  # photos per unit: one forward pass
BASELINE = "baseline"  # the pass of the random-order curves: an entry per paged photo and class
SANITY_SIDE = 96  # the height of each map in a randomization strip
PHOTO_SCHEMA = 5  # what photo entries hold; 5: CAMs carry their faithfulness, feature sheets clear spare cells; 4: keyed by class rank
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


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _probability(value) -> bool:
    return number(value) and 0 <= value <= 1


def _curve(value) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(map(_probability, value))


def _figures(value) -> bool:
    return isinstance(value, list) and len(value) >= 1 and all(number(v) for v in value)


def _size(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_count, value)) and all(value)


def _snapshots(value) -> bool:
    """A trajectory's record: per snapshot its step, canvas, mean activation and peak."""
    fields = {"step": _count, "canvas": _count, "activation": number, "peak": number}
    return isinstance(value, list) and len(value) >= 2 and all(
        isinstance(s, dict) and set(s) == set(fields) and all(check(s[k]) for k, check in fields.items())
        for s in value)


# MACO's transparency map is published as its tile with the map for alpha, each pixel's weight
# over this percentile of the map's fully opaque (the display of Fel et al.'s own code, Horama's
# plot_maco): a few pixels dominate a gradient's magnitude, and a scale set by them would hide the rest.
TRANSPARENCY_PERCENTILE = 80.0


# What the record of each kind of entry must hold before it is used (see Cache.get). A
# filter's "peak" is not required: tiles cached before it was recorded get it from their
# saved pixels (gallery.orchestrate.legacy), without rendering them again.
REQUIRE = {
    "filter": {"activation": number},
    "trajectory": {"snapshots": _snapshots},
    "transparency": {"scale": number, "percentile": number},
    "bands": {"channels": _count},
    "photo": {"size": _size},
    "features": {name: _count for name in ("cols", "rows", "cell", "channels")},
    "cam": {"class": _count, "p": _probability, "top": _probability, "bottom": _probability,
            "deletion": _curve, "insertion": _curve},
    "baseline": {"class": _count, "deletion": _curve, "insertion": _curve},
    "sanity": {"class": _count, "spearman": _figures, "ssim": _figures, "layers": lambda v: isinstance(v, list)},
    "contributions": {"class": _count},
    "caricature": {"cosine": number},
}


@dataclass(frozen=True)
class Job:
    """What every unit of one build shares: sent to each worker once."""

    fingerprint: str
    render: RenderSettings
    preprocess: str
    selection: dict[str, tuple[int, ...]]  # the filters to render, by conv layer
    _: KW_ONLY  # the rest by name: eleven fields in a row are too easily swapped
    variants: tuple[str, ...] = ()  # extra images per filter
    cam_layers: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("gradcam",)
    ranks: int = 0  # classes explained per photo (top-k, at most the model's classes)
    input: tuple[int, int] = (224, 224)  # the photos' input size
    exact: tuple[str, ...] = ()  # layers linear in the pixels (gallery.render.exact.linear)
    trajectory: int = 0  # snapshots recorded per filter image (0: none)
    channels: Channels = RGB  # the model's input channels and which are shown as RGB
    caricatures: tuple[str, ...] = ()  # layers that draw a caricature of each paged photo

    curve_points: int = attribution.POINTS  # steps of each map's deletion and insertion curves
    randomize: int = 0  # layers the randomization check re-initializes at its deepest level (0: no check)

    def caricature_key(self, digest: str, layer: str) -> str:
        """Named for the photo's content, the model, the layer and every setting that changes
        the optimization (the filter tiles' own, as the layer renders them)."""
        settings = self.render.for_layer(layer in self.exact).key()
        return self.photo_key("caricature", digest, layer=layer, power=COSINE_POWER, **settings)

    def solved(self, layer: str, variant: str) -> bool:
        """Whether these images are made in closed form (:mod:`gallery.render.exact`)."""
        return layer in self.exact and variant in exact.VARIANTS

    def transparent(self, layer: str, variant: str) -> bool:
        """Whether these images come with MACO's transparency maps (the main image alone gets
        one: an optimization, not a closed form, under a parameterization that makes them)."""
        return (self.render.parameterization in params.TRANSPARENT and variant == MAIN
                and not self.solved(layer, variant))

    @property
    def layers(self) -> tuple[str, ...]:
        """The selected conv layers: their filters, feature maps and peaks."""
        return tuple(self.selection)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (MAIN, *[v for v in self.variants if v != MAIN])

    def photo_key(self, kind: str, digest: str, **parts) -> str:
        common = {"model": self.fingerprint, "preprocess": self.preprocess, "input": list(self.input), "v": PHOTO_SCHEMA,
                  **self.channels.key()}
        return make_key(kind=kind, photo=digest, **common, **parts)


@dataclass(frozen=True)
class Entry:
    key: str
    part: str  # the pass that computes it
    about: dict  # kind, model, layer: what --cache-info reports
    slot: tuple = ()  # where it goes: (index, copy) for filters, (photo, layer, method, rank) for photos


@dataclass
class FilterUnit:
    variant: str
    layer: str
    indices: tuple[int, ...]
    entries: tuple[Entry, ...]
    first_look: bool = False

    @property
    def name(self) -> str:
        extra = "" if self.variant == MAIN else f" ({self.variant})"
        return f"{self.layer} filters {self.indices[0]}–{self.indices[-1]}{extra}"

    @property
    def images(self) -> int:
        """Filter images rendered: trajectories come from the same optimization."""
        return sum(e.about["kind"] == "filter" for e in self.entries)


@dataclass
class PhotoUnit:
    start: int  # the first photo's position in the build
    photos: tuple  # Photo objects (bytes-backed when the unit travels)
    paged: tuple[bool, ...]
    entries: tuple[Entry, ...]
    classes: dict[int, list[int]] = field(default_factory=dict)  # cached predictions, for CAM passes

    @property
    def name(self) -> str:
        return f"photos {self.start + 1}–{self.start + len(self.photos)}"


def filter_units(job: Job) -> list[FilterUnit]:
    """Every filter unit, in the order a person wants to see them: the first span of each
    layer (a first look at all of them), then the rest layer by layer, then the variants."""
    first, rest, extra = [], [], []
    for variant in job.kinds:
        per_batch = max(1, job.render.batch // VARIANTS[variant].copies)
        for layer, indices in job.selection.items():
            for n, (start, length) in enumerate(spans(len(indices), per_batch)):
                chosen = tuple(indices[start:start + length])
                unit = FilterUnit(variant, layer, chosen, _filter_entries(job, variant, layer, chosen),
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
                    preprocess=job.preprocess, **job.render.for_layer(layer in job.exact).key(), **version,
                    **job.channels.key())


def trajectory_key(job: Job, layer: str, index: int) -> str:
    """Named for the tile whose optimization it records and the steps it was taken at."""
    return make_key(kind="trajectory", source=filter_key(job, layer, index, MAIN, 0),
                    steps=snapshot_steps(job.render, job.trajectory))


def transparency_key(job: Job, layer: str, index: int) -> str:
    """Named for the tile whose optimization gathered it, and how its map is made alpha."""
    return make_key(kind="transparency", source=filter_key(job, layer, index, MAIN, 0),
                    percentile=TRANSPARENCY_PERCENTILE)


def bands_key(job: Job, layer: str, index: int) -> str:
    """Every channel of a main tile whose view shows only some (gallery.channels.strip)."""
    return make_key(kind="bands", source=filter_key(job, layer, index, MAIN, 0))


def _filter_entries(job, variant, layer, indices) -> tuple[Entry, ...]:
    about = {"kind": "filter", "model": job.fingerprint, "layer": layer}
    tiles = [Entry(filter_key(job, layer, i, variant, c), "render", about, (i, c))
             for i in indices for c in range(VARIANTS[variant].copies)]
    if job.transparent(layer, variant):
        tiles += [Entry(transparency_key(job, layer, i), "render", {**about, "kind": "transparency"},
                        (i, "transparency")) for i in indices]
    if job.channels.banded and variant == MAIN:
        tiles += [Entry(bands_key(job, layer, i), "render", {**about, "kind": "bands"}, (i, "bands")) for i in indices]
    if not job.trajectory or variant != MAIN or job.solved(layer, variant):  # a solved tile has no path to show
        return tuple(tiles)
    about = {**about, "kind": "trajectory"}
    return (*tiles, *(Entry(trajectory_key(job, layer, i), "render", about, (i, "trajectory")) for i in indices))


def photo_units(job: Job, photos, pages: int | None, classify: bool) -> list[PhotoUnit]:
    """The photos in batches; the first ``pages`` (all, for ``None``) get a page each."""
    units = []
    for start, length in spans(len(photos), PHOTO_BATCH):
        batch = tuple(photos[start:start + length])
        paged = tuple(pages is None or start + i < pages for i in range(length))
        entries = [e for i, photo in enumerate(batch) for e in _photo_entries(job, start + i, photo, paged[i], classify)]
        units.append(PhotoUnit(start, batch, paged, tuple(entries)))
    return units


def _photo_entries(job: Job, position: int, photo, paged: bool, classify: bool):
    model = {"model": job.fingerprint}
    # The photo as shown: in the model's channels (grey for one), so named for them unless RGB.
    yield Entry(make_key(kind="photo", photo=photo.digest, side=PHOTO_SIDE, **job.channels.key()), "image",
                {"kind": "photo"}, (position,))
    for layer in job.layers:
        yield Entry(job.photo_key("peaks", photo.digest, layer=layer), "features", {"kind": "peaks", **model},
                    (position, layer, "peaks"))
        if paged:
            yield Entry(job.photo_key("features", photo.digest, layer=layer), "features",
                        {"kind": "features", **model}, (position, layer, "sheet"))
    if paged:
        for layer in job.caricatures:
            yield Entry(job.caricature_key(photo.digest, layer), caricature_part(layer),
                        {"kind": "caricature", **model, "layer": layer}, (position, layer, "caricature"))
    if not (paged and classify):
        return
    yield Entry(job.photo_key("predictions", photo.digest), "predictions", {"kind": "predictions", **model},
                (position,))
    curve = {"curve": job.curve_points}  # the curves' steps; their fill and tie rule are PHOTO_SCHEMA's
    if attributions(job):
        for rank in range(job.ranks):  # the random-order curves every map of a class is read against
            yield Entry(job.photo_key("baseline", photo.digest, rank=rank, **curve, grid=faithfulness.RANDOM_GRID,
                                      seed=faithfulness.RANDOM_SEED), BASELINE, {"kind": "baseline", **model},
                        (position, None, BASELINE, rank))
    for layer, method in attributions(job):
        part = attribution_part(layer, method)
        where = {"layer": layer} if layer is not None else saliency.key_parts(method)
        for rank in range(job.ranks):
            yield Entry(job.photo_key("cam", photo.digest, **where, method=method, rank=rank, **curve), part,
                        {"kind": "cam", **model}, (position, layer, method, rank))
        if method in WEIGHED:
            yield Entry(job.photo_key("contributions", photo.digest, layer=layer, method=method), part,
                        {"kind": "contributions", **model}, (position, layer, method))
        if job.randomize and job.ranks:
            key = job.photo_key("sanity", photo.digest, **where, method=method, levels=job.randomize,
                                seed=sanity.SEED, scheme=sanity.SCHEME, strip=SANITY_SIDE)
            yield Entry(key, sanity_part(layer, method), {"kind": "sanity", **model}, (position, layer, method, "sanity"))


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


def flops(unit, job: Job, costs) -> float:
    """What running ``unit`` costs, in FLOPs (see :mod:`gallery.render.cost`)."""
    if isinstance(unit, FilterUnit):
        if job.solved(unit.layer, unit.variant):
            return sum(f * n for _, f, n in cost_stages(unit, job, costs)[0])
        return cost.total_flops(costs, job.render, unit.layer, unit.images)
    return sum(f for _, f, _ in cost_stages(unit, job, costs)[0])


def photo_passes(unit: PhotoUnit, job: Job, costs, parts=None) -> list[tuple[str, float]]:
    """``[(part, FLOPs)]`` of a photo unit's passes, in the order a worker runs them
    (:class:`gallery.orchestrate.work._PhotoRun`); ``parts``: only those (the ones a task lost)."""
    forward = costs.forward_flops(job.input[0])
    paged = sum(unit.paged)
    passes = [("features", len(unit.photos)), ("predictions", paged)]
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


def cost_stages(unit, job: Job, costs, parts=None) -> tuple:
    """``(stages, images, photos, optimized)`` of a unit, as
    :class:`~gallery.orchestrate.progress.Progress` counts it: a filter unit's stages are those of
    the coarse-to-fine schedule, a photo unit's its passes (``parts``: those that run), one
    step each; ``optimized`` is false for images solved in closed form, which cost almost nothing."""
    if not isinstance(unit, FilterUnit):
        stages_ = [(("photos", part), f, 1) for part, f in photo_passes(unit, job, costs, parts)]
        return stages_ or [(("photos", "image"), 0.0, 1)], 0, len(unit.photos), False
    # An image solved exactly costs one gradient pass at full size.
    solved = job.solved(unit.layer, unit.variant)
    plan = [(job.render.size, 1)] if solved else stages(job.render.steps, job.render.size, job.render.scales)
    return ([((unit.layer, canvas), unit.images * costs.step_flops(unit.layer, cost.network_side(job.render, canvas)),
              n) for canvas, n in plan], unit.images, 0, not solved)


@dataclass
class Task:
    """A unit the cache could not satisfy, and what it must produce."""

    uid: int  # the unit's place in the build's plan
    unit: FilterUnit | PhotoUnit
    missing: frozenset[str]  # keys of the entries that were lost

    @property
    def parts(self) -> set[str]:
        return {e.part for e in self.unit.entries if e.key in self.missing}


def lookup(unit, cache) -> dict[str, tuple[bytes, dict]]:
    """``{key: (payload, meta)}`` of every entry of ``unit`` the cache holds intact.

    Every entry is looked up, not only up to the first miss, so the intact ones are known
    (and kept) when the unit has to run again for a lost sibling.
    """
    found = {}
    for entry in unit.entries:
        got = cache.get(entry.key, require=REQUIRE.get(entry.about["kind"]))
        if got is not None:
            found[entry.key] = got
    if isinstance(unit, PhotoUnit):
        for entry in unit.entries:  # a CAM pass whose predictions are cached starts from them
            if entry.part == "predictions" and entry.key in found:
                unit.classes[entry.slot[0]] = [p["index"] for p in json.loads(found[entry.key][0])]
    return found


def store(task: Task, produced: dict[str, tuple[bytes, dict]], found: dict, cache, skipped=()) -> dict:
    """Write what ``task`` lost from what its run ``produced``; return every entry it now has.

    Entries that were intact stay as they are, even if the run produced them again.
    ``skipped`` holds the photo positions the run could not read: they have no entries.
    """
    for entry in task.unit.entries:
        if entry.key in found or (isinstance(task.unit, PhotoUnit) and entry.slot[0] in skipped):
            continue
        if entry.key not in produced:
            raise RuntimeError(f"{task.unit.name}: the run did not produce its {entry.about['kind']} entry")
        payload, meta = produced[entry.key]
        cache.put(entry.key, payload, meta, about=entry.about)
        found[entry.key] = (payload, meta)
    return found
