"""Every tile the site shows, computed once and fetched from the cache afterwards.

Filter tiles come from batched activation maximization; photo tiles (the photo,
predictions, feature-map sheets, CAM overlays) from one forward pass per photo and one
backward pass per CAM layer and method. Work that the cache already holds is never
redone, and models are only run when something is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from . import imaging
from .activations import Activations, input_size
from .cache import Cache, make_key
from .cams import CamEngine
from .config import RenderSettings
from .optimize import FilterRenderer
from .progress import Progress

PHOTO_SIDE = 640  # photos are published no larger than this
THUMB_SIDE = 96  # layer-page thumbnails, sized for their slot
TOP_STORED = 50  # predictions kept per photo, however many the pages show
TOP_CHANNELS = 12  # contributing channels kept per photo, class and CAM layer
SCHEMA = 2  # bump when what an entry holds changes, so old entries are not reused


@dataclass
class FilterTile:
    index: int
    key: str
    thumb: str
    activation: float


def filter_tiles(model, fingerprint: str, selection: dict[str, list[int]], settings: RenderSettings,
                 preprocess: str, cache: Cache) -> dict[str, list[FilterTile]]:
    """``{layer: [FilterTile]}``, rendering only the filters the cache lacks."""
    keys = {
        layer: {i: make_key(kind="filter", model=fingerprint, layer=layer, filter=i,
                            preprocess=preprocess, **settings.key()) for i in indices}
        for layer, indices in selection.items()
    }
    found: dict[str, dict[int, FilterTile]] = {layer: {} for layer in selection}
    missing: dict[str, list[int]] = {}
    for layer, by_index in keys.items():
        for i, key in by_index.items():
            entry = cache.get(key)
            if entry is None:
                missing.setdefault(layer, []).append(i)
            else:
                found[layer][i] = _tile(cache, i, key, entry[0], float(entry[1]["activation"]))
    total = sum(len(v) for v in missing.values())
    if total:
        with Progress("filter images", total * settings.steps, unit=" filter-steps") as bar:
            for layer, indices in missing.items():
                renderer = FilterRenderer(model, layer, settings, preprocess)
                for start in range(0, len(indices), settings.batch):
                    batch = indices[start:start + settings.batch]
                    note = f"{layer} filters {batch[0]}–{batch[-1]}"
                    images, acts = renderer.render(batch, on_step=lambda _s, n=len(batch): bar.advance(n, note))
                    for i, image, act in zip(batch, images, acts):
                        key, data = keys[layer][i], imaging.encode_png(image)
                        cache.put(key, data, {"activation": float(act)},
                                  about={"kind": "filter", "model": fingerprint, "layer": layer})
                        found[layer][i] = _tile(cache, i, key, data, float(act))
    return {layer: [found[layer][i] for i in indices] for layer, indices in selection.items()}


def _tile(cache: Cache, index: int, key: str, png: bytes, activation: float) -> FilterTile:
    thumb = make_key(kind="thumb", source=key, side=THUMB_SIDE)
    if cache.get(thumb) is None:
        small = imaging.resize(imaging.decode(png), THUMB_SIDE, THUMB_SIDE)
        cache.put(thumb, imaging.encode_jpeg(small, quality=85), about={"kind": "thumb"})
    return FilterTile(index, key, thumb, activation)


@dataclass
class PhotoTiles:
    name: str
    image_key: str
    size: tuple[int, int]
    predictions: list[dict] = field(default_factory=list)  # [{"index", "probability"}]
    features: dict[str, tuple[str, dict]] = field(default_factory=dict)  # layer -> (key, layout)
    cams: list[dict] = field(default_factory=list)  # [{"layer", "method", "class", "key"}]
    contributions: dict[str, list] = field(default_factory=dict)  # layer -> [(channel, share)] for the top class


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


def photo_tiles(model, fingerprint: str, photos, layers: list[str], cam_layers: list[str], *,
                preprocess: str, cache: Cache, top_k: int, methods=("gradcam",),
                fallback: int = 224) -> list[PhotoTiles]:
    """Predictions, feature sheets and CAM overlays for every photo, cached."""
    lazy = _Lazy(model, layers, preprocess, fallback)
    common = {"model": fingerprint, "preprocess": preprocess, "input": input_size(model, fallback), "v": SCHEMA}
    results = []
    with Progress("photos", len(photos)) as bar:
        for photo in photos:
            result = _photo_and_features(photo, layers, common, cache, lazy)
            if cam_layers:
                _predictions_and_cams(result, photo, cam_layers, methods, common, cache, lazy, top_k)
            results.append(result)
            bar.advance(1, photo.name)
    return results


def _photo_and_features(photo, layers, common, cache, lazy) -> PhotoTiles:
    h, w = photo.pixels.shape[:2]
    scale = min(1.0, PHOTO_SIDE / max(h, w))
    image_key = make_key(kind="photo", photo=photo.digest, side=PHOTO_SIDE)
    result = PhotoTiles(photo.name, image_key, (max(1, round(w * scale)), max(1, round(h * scale))))
    if cache.get(image_key) is None:
        cache.put(image_key, imaging.encode_jpeg(_shown(photo)), about={"kind": "photo"})
    keys = {layer: make_key(kind="features", photo=photo.digest, layer=layer, **common) for layer in layers}
    entries = {layer: cache.get(key) for layer, key in keys.items()}
    missing = [layer for layer, entry in entries.items() if entry is None]
    if missing:
        maps = lazy.activations.feature_maps(photo.pixels)
        for layer in missing:
            sheet, layout = _feature_sheet(maps[layer])
            cache.put(keys[layer], sheet, layout, about={"kind": "features", "model": common["model"]})
            entries[layer] = (sheet, layout)
    result.features = {layer: (keys[layer], entries[layer][1]) for layer in layers}
    return result


def _shown(photo) -> np.ndarray:
    h, w = photo.pixels.shape[:2]
    scale = min(1.0, PHOTO_SIDE / max(h, w))
    return imaging.resize(photo.pixels, max(1, round(h * scale)), max(1, round(w * scale)))


def _feature_sheet(maps: np.ndarray) -> tuple[bytes, dict]:
    """The sheet's PNG and its layout: grid, cell, each channel's peak and where it is."""
    h, w, c = maps.shape
    sheet, cell = imaging.feature_sheet(maps)
    cols, rows = imaging.sheet_layout(c)
    flat = maps.reshape(h * w, c)
    where = flat.argmax(axis=0)
    layout = {
        "cols": cols, "rows": rows, "cell": cell, "channels": int(c), "map": [int(h), int(w)],
        "peak": [round(float(v), 4) for v in flat.max(axis=0)],
        # Centre of the strongest unit, as a fraction of the photo's height and width.
        "at": [[round((int(i) // w + 0.5) / h, 4), round((int(i) % w + 0.5) / w, 4)] for i in where],
    }
    return imaging.encode_png(sheet), layout


def _predictions_and_cams(result, photo, cam_layers, methods, common, cache, lazy, top_k) -> None:
    pred_key = make_key(kind="predictions", photo=photo.digest, **common)
    entry = cache.get(pred_key)
    if entry is None:
        probs = lazy.activations.predictions(photo.pixels)
        order = np.argsort(-probs)[:TOP_STORED]
        stored = [{"index": int(i), "probability": float(probs[i])} for i in order]
        cache.put(pred_key, json.dumps(stored).encode("utf-8"), about={"kind": "predictions", "model": common["model"]})
    else:
        stored = json.loads(entry[0])
    result.predictions = stored[:top_k]
    classes = [p["index"] for p in result.predictions]
    shown = None
    for layer in cam_layers:
        for method in methods:
            keys = [make_key(kind="cam", photo=photo.digest, layer=layer, method=method, cls=c, **common)
                    for c in classes]
            contrib_key = make_key(kind="contributions", photo=photo.digest, layer=layer, method=method,
                                   cls=classes[0], **common)
            missing = {k for k in keys if cache.get(k) is None}
            contrib = cache.get(contrib_key)
            if missing or contrib is None:
                heat, shares = lazy.cam(layer, method).explain(photo.pixels, classes)  # one backward pass
                shown = _shown(photo) if shown is None else shown
                for k, m in zip(keys, heat):
                    if k in missing:
                        overlay = imaging.overlay(shown, imaging.resize(m, shown.shape[0], shown.shape[1]))
                        cache.put(k, imaging.encode_jpeg(overlay), about={"kind": "cam", "model": common["model"]})
                order = np.argsort(-shares[0])[:TOP_CHANNELS]
                top = [[int(i), round(float(shares[0][i]), 5)] for i in order]
                cache.put(contrib_key, json.dumps(top).encode("utf-8"),
                          about={"kind": "contributions", "model": common["model"]})
            else:
                top = json.loads(contrib[0])
            result.cams += [{"layer": layer, "method": method, "class": c, "key": k} for c, k in zip(classes, keys)]
            if method == methods[0]:
                result.contributions[layer] = top
