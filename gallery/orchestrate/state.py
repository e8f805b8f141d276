"""What a build knows so far: the settled entries of its units, as the tiles the site shows.

The driver absorbs each unit once it is settled, in whatever order units finish. Filters
and photos not settled yet are *pending*; the site shows them with a placeholder until a
later refresh. Top photos are merged as photos arrive (see :class:`TopExamples`), and a
photo's peaks are dropped once merged unless it has a page, so memory does not grow with
the number of photos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .. import imaging
from ..photos.examples import TopExamples
from ..render.objectives import VARIANTS
from .cache import make_key
from .units import BASELINE, MAIN, FilterUnit, Job, PhotoUnit, attribution_part, attributions, caricature_part, sanity_part

THUMB_SIDE = 96  # layer-page thumbnails, sized for their slot
FRAME_SIDE = 128  # a trajectory's frames, shown side by side on the filter page: the CPU tile's own size


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
    trajectory: Trajectory | None = None
    transparency: Transparency | None = None
    bands: str | None = None  # every channel in grey, side by side, where the tile shows only some

    @property
    def pending(self) -> bool:
        return self.key is None


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


class Gallery:
    def __init__(self, job: Job, photos, pages: int | None, top_k: int, examples: int):
        self.job, self.photos, self.top_k = job, list(photos), top_k
        self.paged = [pages is None or i < pages for i in range(len(self.photos))]
        self.images: dict[tuple, VariantImage] = {}  # (layer, index, variant, copy) -> image
        self.thumbs: dict[tuple[str, int], str] = {}
        self.trajectories: dict[tuple[str, int], Trajectory] = {}
        self.transparencies: dict[tuple[str, int], Transparency] = {}
        self.bands: dict[tuple[str, int], str] = {}
        self._collages: dict[str, str] = {}  # layer -> key, once every filter of it is rendered
        self.tiles: dict[int, PhotoTiles] = {}  # settled photos, by position
        self.broken: set[int] = set()
        self.examples = TopExamples(examples)

    # absorbing settled units ------------------------------------------------------------

    def absorb(self, unit, found: dict, cache, skipped=()) -> None:
        if isinstance(unit, FilterUnit):
            self._filters(unit, found, cache)
        else:
            self._photos(unit, found, set(skipped))

    def _filters(self, unit: FilterUnit, found: dict, cache) -> None:
        for entry in unit.entries:
            index, copy = entry.slot
            payload, meta = found[entry.key]
            if entry.about["kind"] == "trajectory":
                frames = self._frames(entry.key, payload, cache)
                self.trajectories[(unit.layer, index)] = Trajectory(entry.key, frames, meta["snapshots"])
                continue
            if entry.about["kind"] == "transparency":
                self.transparencies[(unit.layer, index)] = Transparency(entry.key, float(meta["percentile"]))
                continue
            if entry.about["kind"] == "bands":
                self.bands[(unit.layer, index)] = entry.key
                continue
            peak = meta.get("peak")
            self.images[(unit.layer, index, unit.variant, copy)] = VariantImage(
                entry.key, float(meta["activation"]), None if peak is None else float(peak))
            if unit.variant == MAIN:
                self.thumbs[(unit.layer, index)] = self._thumb(entry.key, payload, cache)

    @staticmethod
    def _thumb(source: str, png: bytes, cache) -> str:
        """A filter image's thumbnail, made from the image's bytes unless cached."""
        key = make_key(kind="thumb", source=source, side=THUMB_SIDE)
        if cache.get(key) is None:
            small = imaging.resize(imaging.decode(png), THUMB_SIDE, THUMB_SIDE)
            cache.put(key, imaging.encode_jpeg(small, quality=85), about={"kind": "thumb"})
        return key

    @staticmethod
    def _frames(source: str, animation: bytes, cache) -> str:
        """An animation's frames in one row, small, so a page can show each one still."""
        key = make_key(kind="frames", source=source, side=FRAME_SIDE)
        if cache.get(key) is None:
            row = [imaging.resize(frame, FRAME_SIDE, FRAME_SIDE) for frame in imaging.decode_frames(animation)]
            cache.put(key, imaging.encode_jpeg(np.concatenate(row, axis=1), quality=88), about={"kind": "frames"})
        return key

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

    def _photos(self, unit: PhotoUnit, found: dict, skipped: set[int]) -> None:
        by_slot = {(e.part, *e.slot): e.key for e in unit.entries}
        for i, photo in enumerate(unit.photos):
            position = unit.start + i
            if position in skipped:
                self.broken.add(position)
                continue
            image = by_slot[("image", position)]
            tiles = PhotoTiles(photo.name, image, tuple(found[image][1]["size"]), unit.paged[i], position=position)
            for layer in self.job.layers:
                top = json.loads(found[by_slot[("features", position, layer, "peaks")]][0])
                self.examples.add(layer, position, top)
                sheet = by_slot.get(("features", position, layer, "sheet"))
                if sheet is not None:
                    tiles.features[layer] = (sheet, {**found[sheet][1], **top})
            for layer in self.job.caricatures:
                key = by_slot.get((caricature_part(layer), position, layer, "caricature"))
                if key is not None:  # a paged photo's
                    tiles.caricatures[layer] = {"key": key, "cosine": float(found[key][1]["cosine"])}
            predictions = by_slot.get(("predictions", position))
            if predictions is not None:
                tiles.predictions = json.loads(found[predictions][0])[:self.top_k]
                self._cams(tiles, by_slot, found)
            self.tiles[position] = tiles

    def _cams(self, tiles: PhotoTiles, by_slot: dict, found: dict) -> None:
        position = tiles.position
        ranks = range(min(self.job.ranks, len(tiles.predictions)))
        if attributions(self.job):
            tiles.baselines = [found[by_slot[(BASELINE, position, None, BASELINE, rank)]][1] for rank in ranks]
        for layer, method in attributions(self.job):
            part = attribution_part(layer, method)
            for rank in ranks:
                key = by_slot[(part, position, layer, method, rank)]
                meta = found[key][1]
                tiles.cams.append({"layer": layer, "method": method, "key": key,
                                   **{k: meta[k] for k in ("class", "p", "top", "bottom", "deletion", "insertion")}})
            check = by_slot.get((sanity_part(layer, method), position, layer, method, "sanity"))
            if check is not None:
                tiles.sanity.append({"layer": layer, "method": method, "key": check, **found[check][1]})
            shares = by_slot.get((part, position, layer, method))  # the first method that weighs channels
            if shares is not None and layer not in tiles.contributions:
                tiles.contributions[layer] = json.loads(found[shares][0])

    # what the site is made from -----------------------------------------------------------

    def filter_tiles(self) -> dict[str, list[FilterTile]]:
        """``{layer: [FilterTile]}`` for every selected filter, pending ones included."""
        result = {}
        for layer, indices in self.job.selection.items():
            tiles = []
            for i in indices:
                main = self.images.get((layer, i, MAIN, 0))
                variants = {v: [self.images.get((layer, i, v, c)) for c in range(VARIANTS[v].copies)]
                            for v in self.job.kinds[1:]}
                tiles.append(FilterTile(i, main and main.key, self.thumbs.get((layer, i)),
                                        main and main.activation, variants, main and main.peak,
                                        self.trajectories.get((layer, i)), self.transparencies.get((layer, i)),
                                        self.bands.get((layer, i))))
            result[layer] = tiles
        return result

    def photo_results(self) -> PhotoResults:
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
    def images_total(self) -> int:
        return sum(len(v) for v in self.job.selection.values()) * sum(VARIANTS[k].copies for k in self.job.kinds)

    @property
    def photos_settled(self) -> bool:
        return len(self.tiles) + len(self.broken) == len(self.photos)
