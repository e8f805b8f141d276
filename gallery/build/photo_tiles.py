"""Everything computed on sample photos, streamed in batches and cached per photo.

Every photo yields its published image and, for each conv layer, its per-channel peaks
(which feed the top photos of every filter). The first ``pages`` photos also get a page:
predictions, a feature-map sheet per layer and CAM overlays. Photos go through the model
a batch at a time, are decoded only when the cache lacks something of theirs, and are
dropped once their batch is done, so memory does not grow with the size of the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .. import imaging
from ..console import warn
from ..errors import GalleryError
from ..photos.activations import Activations, input_size
from ..photos.cams import CamEngine
from ..photos.examples import TopExamples, peaks
from .cache import Cache, make_key
from .progress import Progress

PHOTO_SIDE = 640  # photos are published no larger than this
PHOTO_BATCH = 8  # photos per forward pass
TOP_STORED = 50  # predictions kept per photo, however many the pages show
TOP_CHANNELS = 12  # contributing channels kept per photo, class and CAM layer
SCHEMA = 3  # bump when what an entry holds changes, so old entries are not reused


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# What the records of published photo entries must hold (see Cache.get).
SIZE = {"size": lambda v: isinstance(v, list) and len(v) == 2 and all(map(_count, v))}
LAYOUT = {name: _count for name in ("cols", "rows", "cell", "channels")}


@dataclass
class PhotoTiles:
    name: str
    image_key: str
    size: tuple[int, int]  # published (width, height)
    paged: bool = False
    predictions: list[dict] = field(default_factory=list)  # [{"index", "probability"}]
    features: dict[str, tuple[str, dict]] = field(default_factory=dict)  # layer -> (key, layout with peaks)
    cams: list[dict] = field(default_factory=list)  # [{"layer", "method", "class", "key"}]
    contributions: dict[str, list] = field(default_factory=dict)  # layer -> [(channel, share)] for the top class


@dataclass
class PhotoResults:
    photos: list[PhotoTiles]  # every readable photo, in order; ``paged`` ones in full
    examples: TopExamples


class _Lazy:
    """Builds the analysis models only when the cache misses something."""

    def __init__(self, model, layers, preprocess, fallback):
        self.model, self.layers, self.preprocess, self.fallback = model, layers, preprocess, fallback
        self._activations = None
        self._cams = {}

    @property
    def activations(self) -> Activations:
        if self._activations is None:
            self._activations = Activations(self.model, self.layers, self.preprocess, self.fallback)
        return self._activations

    def cam(self, layer, method) -> CamEngine:
        if (layer, method) not in self._cams:
            self._cams[layer, method] = CamEngine(self.model, layer, method, self.preprocess, self.fallback)
        return self._cams[layer, method]


class _Batch:
    """One batch of photos; each is decoded at most once, and only if asked for."""

    def __init__(self, photos):
        self.photos = photos
        self._pixels: dict[int, np.ndarray] = {}
        self._shown: dict[int, np.ndarray] = {}
        self.broken: set[int] = set()

    def shown(self, i: int) -> np.ndarray:
        """The photo as published (at most ``PHOTO_SIDE``), made once per photo."""
        if i not in self._shown:
            pixels = self.pixels(i)
            h, w = pixels.shape[:2]
            scale = min(1.0, PHOTO_SIDE / max(h, w))
            self._shown[i] = imaging.resize(pixels, max(1, round(h * scale)), max(1, round(w * scale)))
        return self._shown[i]

    def pixels(self, i: int) -> np.ndarray | None:
        if i not in self._pixels and i not in self.broken:
            try:
                self._pixels[i] = self.photos[i].pixels
            except GalleryError as exc:
                warn(f"skipping a photo: {exc}")
                self.broken.add(i)
        return self._pixels.get(i)


def photo_tiles(model, fingerprint: str, photos, layers: list[str], cam_layers: list[str], *,
                preprocess: str, cache: Cache, top_k: int, methods=("gradcam",), fallback: int = 224,
                pages: int | None = None, examples: int = 8, batch: int = PHOTO_BATCH) -> PhotoResults:
    """Tiles for every photo and the top ``examples`` photos of every filter, cached."""
    lazy = _Lazy(model, layers, preprocess, fallback)
    common = {"model": fingerprint, "preprocess": preprocess, "input": input_size(model, fallback), "v": SCHEMA}
    results = PhotoResults([], TopExamples(examples))
    with Progress("photos", len(photos)) as bar:
        for start in range(0, len(photos), batch):
            chunk = _Batch(photos[start:start + batch])
            paged = [pages is None or start + i < pages for i in range(len(chunk.photos))]
            done = _images(chunk, paged, cache)
            _features(chunk, done, layers, common, cache, lazy)
            if cam_layers:
                _predictions_and_cams([i for i, t in enumerate(done) if t and t.paged], done, chunk, cam_layers,
                                      methods, common, cache, lazy, top_k)
            for i, tiles in enumerate(done):
                if tiles is not None and i not in chunk.broken:
                    results.photos.append(tiles)
                    for layer, found in tiles.features.items():
                        results.examples.add(layer, len(results.photos) - 1, found[1])
                    if not tiles.paged:
                        tiles.features = {}  # only their peaks were wanted
            bar.advance(len(chunk.photos), chunk.photos[-1].name)
    return results


def _images(chunk: _Batch, paged: list[bool], cache: Cache) -> list[PhotoTiles | None]:
    """The published image of each photo (its size is kept with it); ``None`` if unreadable."""
    done = []
    for i, photo in enumerate(chunk.photos):
        key = make_key(kind="photo", photo=photo.digest, side=PHOTO_SIDE)
        entry = cache.get(key, require=SIZE)
        if entry is None:
            if chunk.pixels(i) is None:
                done.append(None)
                continue
            shown = chunk.shown(i)
            cache.put(key, imaging.encode_jpeg(shown), {"size": [shown.shape[1], shown.shape[0]]},
                      about={"kind": "photo"})
            entry = (None, {"size": [shown.shape[1], shown.shape[0]]})
        done.append(PhotoTiles(photo.name, key, tuple(entry[1]["size"]), paged=paged[i]))
    return done


def _features(chunk, done, layers, common, cache, lazy) -> None:
    """Peaks of every layer for every photo, and feature sheets for paged ones; one
    forward pass for all the photos of the batch that miss any of them."""
    wanted = {}
    for i, (tiles, photo) in enumerate(zip(done, chunk.photos)):
        if tiles is None:
            continue
        keys = {layer: (make_key(kind="peaks", photo=photo.digest, layer=layer, **common),
                        make_key(kind="features", photo=photo.digest, layer=layer, **common) if tiles.paged else None)
                for layer in layers}
        wanted[i] = keys
        for layer, (peak_key, sheet_key) in keys.items():
            found, sheet = cache.get(peak_key), cache.get(sheet_key, require=LAYOUT) if sheet_key else None
            if found is not None and (sheet_key is None or sheet is not None):
                tiles.features[layer] = (sheet_key, {**(sheet[1] if sheet else {}), **json.loads(found[0])})
    missing = [i for i in wanted if len(done[i].features) < len(layers) and chunk.pixels(i) is not None]
    if not missing:
        return
    maps = lazy.activations.feature_maps_batch([chunk.pixels(i) for i in missing])
    for row, i in enumerate(missing):
        for layer, (peak_key, sheet_key) in wanted[i].items():
            if layer in done[i].features:
                continue
            found = peaks(maps[layer][row])
            cache.put(peak_key, json.dumps(found).encode("utf-8"), about={"kind": "peaks", "model": common["model"]})
            layout = {}
            if sheet_key:
                sheet, cell = imaging.feature_sheet(maps[layer][row])
                channels = int(maps[layer].shape[-1])
                cols, rows = imaging.sheet_layout(channels)
                layout = {"cols": cols, "rows": rows, "cell": cell, "channels": channels}
                cache.put(sheet_key, imaging.encode_png(sheet), layout,
                          about={"kind": "features", "model": common["model"]})
            done[i].features[layer] = (sheet_key, {**layout, **found})


def _predictions_and_cams(rows, done, chunk, cam_layers, methods, common, cache, lazy, top_k) -> None:
    """Top classes, and a CAM per class, CAM layer and method, for the paged photos;
    one batched forward for the predictions and one batched pass per layer and method."""
    pred_keys = {i: make_key(kind="predictions", photo=chunk.photos[i].digest, **common) for i in rows}
    stored = {}
    for i, key in pred_keys.items():
        entry = cache.get(key)
        stored[i] = json.loads(entry[0]) if entry else None
    missing = [i for i in rows if stored[i] is None and chunk.pixels(i) is not None]
    if missing:
        for i, probs in zip(missing, lazy.activations.predictions_batch([chunk.pixels(i) for i in missing])):
            order = np.argsort(-probs)[:TOP_STORED]
            stored[i] = [{"index": int(c), "probability": float(probs[c])} for c in order]
            cache.put(pred_keys[i], json.dumps(stored[i]).encode("utf-8"),
                      about={"kind": "predictions", "model": common["model"]})
    rows = [i for i in rows if stored[i] is not None]
    for i in rows:
        done[i].predictions = stored[i][:top_k]
    for layer in cam_layers:
        for method in methods:
            keys, contrib_keys, shares, todo = {}, {}, {}, []
            for i in rows:
                classes = [p["index"] for p in done[i].predictions]
                about = dict(photo=chunk.photos[i].digest, layer=layer, method=method, **common)
                keys[i] = [make_key(kind="cam", cls=c, **about) for c in classes]
                contrib_keys[i] = make_key(kind="contributions", cls=classes[0], **about)
                # Every entry is looked up, not only up to the first miss, so the ones still
                # intact are known valid and are not written again by the rerun pass.
                cams_found = [cache.get(k) is not None for k in keys[i]]
                entry = cache.get(contrib_keys[i])
                if entry is None or not all(cams_found):
                    todo.append(i)
                else:
                    shares[i] = json.loads(entry[0])
            todo = [i for i in todo if chunk.pixels(i) is not None]
            if todo:
                heats, contributions = lazy.cam(layer, method).explain_batch(
                    [chunk.pixels(i) for i in todo], [[p["index"] for p in done[i].predictions] for i in todo])
                for i, heat, share in zip(todo, heats, contributions):
                    shown = chunk.shown(i)
                    for k, m in zip(keys[i], heat):
                        overlay = imaging.overlay(shown, imaging.resize(m, shown.shape[0], shown.shape[1]))
                        cache.put(k, imaging.encode_jpeg(overlay), about={"kind": "cam", "model": common["model"]})
                    order = np.argsort(-share[0])[:TOP_CHANNELS]
                    shares[i] = [[int(c), round(float(share[0][c]), 5)] for c in order]
                    cache.put(contrib_keys[i], json.dumps(shares[i]).encode("utf-8"),
                              about={"kind": "contributions", "model": common["model"]})
            for i in rows:
                if i not in shares:  # unreadable after all
                    continue
                classes = [p["index"] for p in done[i].predictions]
                done[i].cams += [{"layer": layer, "method": method, "class": c, "key": k}
                                 for c, k in zip(classes, keys[i])]
                if method == methods[0]:
                    done[i].contributions[layer] = shares[i]
