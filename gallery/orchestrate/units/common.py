"""What every unit kind shares: the job, an entry, a task, and settling a unit with the cache.

Settling a unit (:func:`lookup`, then :func:`store`) is the only place that knows how
shared passes meet the cache: every entry of a unit is looked up, past any miss; a unit
whose entries are all intact is never scheduled; one that lost any entry runs the passes
that produce the lost ones; and only what was lost is written back.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

from ... import attribution
from ...channels import RGB, Channels
from ...config import RenderSettings
from ...render import exact, params
from ...render.caricature import COSINE_POWER
from ..cache import make_key

MAIN = "channel"  # the variant every filter gets; the others are extra images
PHOTO_SCHEMA = 5  # what photo entries hold; 5: CAMs carry their faithfulness, feature sheets clear spare cells; 4: keyed by class rank


def count(value) -> bool:
    """A whole number, 0 or more (a ``require`` check, as :func:`~gallery.orchestrate.cache.number`)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
    coarse: tuple[str, ...] = ()  # layers that take the coarse layers' settings (gallery.render.kinds.coarse)
    depthwise: bool = False  # a model with depthwise convolutions, whose layers take its settings
    trajectory: int = 0  # snapshots recorded per filter image (0: none)
    channels: Channels = RGB  # the model's input channels and which are shown as RGB
    caricatures: tuple[str, ...] = ()  # layers that draw a caricature of each paged photo

    curve_points: int = attribution.POINTS  # steps of each map's deletion and insertion curves
    randomize: int = 0  # layers the randomization check re-initializes at its deepest level (0: no check)

    def caricature_key(self, digest: str, layer: str) -> str:
        """Named for the photo's content, the model, the layer and every setting that changes
        the optimization (the filter tiles' own, as the layer renders them)."""
        settings = self.settings(layer).key()
        return self.photo_key("caricature", digest, layer=layer, power=COSINE_POWER, **settings)

    def settings(self, layer: str):
        """The render settings ``layer``'s images are made with (:meth:`RenderSettings.for_layer`)."""
        return self.render.for_layer(layer in self.exact, layer in self.coarse, self.depthwise)

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
    slot: object  # where it goes, a named type of its unit's kind, with the ``kind`` and ``require`` of its record


class Unit:
    """What the driver, the executors and the estimate ask of a unit, whatever its kind.

    Each kind (:class:`~.filters.FilterUnit`, :class:`~.photos.PhotoUnit`) answers for
    itself: ``name``, ``entries``, ``images`` (filter images it renders), ``photos`` (those
    it reads), ``flops``, ``stages``, ``optimizes``, ``run`` (on a worker), ``stepper`` (its
    progress) and ``absorb`` (into the build's state). The methods here are what a kind
    that has nothing to add does.
    """

    def resume(self, found: dict) -> None:
        """Take up what the cache holds (``found``) before the unit runs."""

    def unread(self, skipped) -> set[str]:
        """Keys of the entries a run leaves without because it could not read their input."""
        return set()

    def portable(self) -> Unit:
        """The unit as it travels to a remote worker."""
        return self

    def unscored(self, found: dict) -> list[Entry]:
        """Cached main filter images whose record lacks its peak (see :mod:`..legacy`)."""
        return []


@dataclass
class Task:
    """A unit the cache could not satisfy, and what it must produce."""

    uid: int  # the unit's place in the build's plan
    unit: Unit
    missing: frozenset[str]  # keys of the entries that were lost

    @property
    def parts(self) -> set[str]:
        return {e.part for e in self.unit.entries if e.key in self.missing}


@dataclass
class Result:
    produced: dict[str, tuple[bytes, dict]] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # photo position -> why it could not be read
    seconds: float = 0.0


def lookup(unit: Unit, cache) -> dict[str, tuple[bytes, dict]]:
    """``{key: (payload, meta)}`` of every entry of ``unit`` the cache holds intact.

    Every entry is looked up, not only up to the first miss, so the intact ones are known
    (and kept) when the unit has to run again for a lost sibling.
    """
    found = {}
    for entry in unit.entries:
        got = cache.get(entry.key, require=entry.slot.require)
        if got is not None:
            found[entry.key] = got
    unit.resume(found)
    return found


def store(task: Task, produced: dict[str, tuple[bytes, dict]], found: dict, cache, skipped=()) -> dict:
    """Write what ``task`` lost from what its run ``produced``; return every entry it now has.

    Entries that were intact stay as they are, even if the run produced them again.
    ``skipped`` holds the photo positions the run could not read: they have no entries.
    """
    unread = task.unit.unread(skipped)
    for entry in task.unit.entries:
        if entry.key in found or entry.key in unread:
            continue
        if entry.key not in produced:
            raise RuntimeError(f"{task.unit.name}: the run did not produce its {entry.slot.kind} entry")
        payload, meta = produced[entry.key]
        cache.put(entry.key, payload, meta, about=entry.about)
        found[entry.key] = (payload, meta)
    return found
