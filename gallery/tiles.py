"""Every tile the site shows, computed once and fetched from the cache afterwards.

Filter tiles come from batched activation maximization; photo tiles (the photo,
predictions, feature-map sheets, CAM overlays) from one forward pass per photo and one
backward pass per CAM layer. Work that the cache already holds is never redone, and
models are only run when something is missing.
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
TOP_STORED = 50  # predictions kept per photo, however many the pages show


@dataclass
class FilterTile:
    index: int
    key: str
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
                found[layer][i] = FilterTile(i, key, float(entry[1]["activation"]))
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
                        key = keys[layer][i]
                        cache.put(key, imaging.encode_png(image), {"activation": float(act)},
                                  about={"kind": "filter", "model": fingerprint, "layer": layer})
                        found[layer][i] = FilterTile(i, key, float(act))
    return {layer: [found[layer][i] for i in indices] for layer, indices in selection.items()}


@dataclass
class PhotoTiles:
    name: str
    image_key: str
    size: tuple[int, int]
    predictions: list[dict] = field(default_factory=list)  # [{"index", "probability"}]
    features: dict[str, tuple[str, dict]] = field(default_factory=dict)  # layer -> (key, layout)
    cams: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # layer -> [(class, key)]


class _Lazy:
    """Builds the analysis models only when the cache misses something."""

    def __init__(self, model, layers, cam_layers, method, preprocess, fallback):
        self.args = (model, layers, cam_layers, method, preprocess, fallback)
        self._activations = None
        self._cams = {}

    @property
    def activations(self) -> Activations:
        if self._activations is None:
            model, layers, _, _, preprocess, fallback = self.args
            self._activations = Activations(model, layers, preprocess, fallback)
        return self._activations

    def cam(self, layer) -> CamEngine:
        if layer not in self._cams:
            model, _, _, method, preprocess, fallback = self.args
            self._cams[layer] = CamEngine(model, layer, method, preprocess, fallback)
        return self._cams[layer]


def photo_tiles(model, fingerprint: str, photos, layers: list[str], cam_layers: list[str], *,
                preprocess: str, cache: Cache, top_k: int, method: str = "gradcam",
                fallback: int = 224) -> list[PhotoTiles]:
    """Predictions, feature sheets and CAM overlays for every photo, cached."""
    side = input_size(model, fallback)
    lazy = _Lazy(model, layers, cam_layers, method, preprocess, fallback)
    common = {"model": fingerprint, "preprocess": preprocess, "input": side}
    results = []
    with Progress("photos", len(photos)) as bar:
        for photo in photos:
            results.append(_one_photo(photo, layers, cam_layers, common, cache, lazy, top_k, method, bool(cam_layers)))
            bar.advance(1, photo.name)
    return results


def _one_photo(photo, layers, cam_layers, common, cache, lazy, top_k, method, classify) -> PhotoTiles:
    h, w = photo.pixels.shape[:2]
    scale = min(1.0, PHOTO_SIDE / max(h, w))
    shown = imaging.resize(photo.pixels, max(1, round(h * scale)), max(1, round(w * scale)))
    image_key = make_key(kind="photo", photo=photo.digest, side=PHOTO_SIDE)
    if cache.get(image_key) is None:
        cache.put(image_key, imaging.encode_jpeg(shown), about={"kind": "photo"})
    result = PhotoTiles(photo.name, image_key, (shown.shape[1], shown.shape[0]))

    feature_keys = {layer: make_key(kind="features", photo=photo.digest, layer=layer, **common) for layer in layers}
    entries = {layer: cache.get(key) for layer, key in feature_keys.items()}
    missing = [layer for layer, entry in entries.items() if entry is None]
    if missing:
        maps = lazy.activations.feature_maps(photo.pixels)
        for layer in missing:
            sheet, cell = imaging.feature_sheet(maps[layer])
            cols, rows = imaging.sheet_layout(maps[layer].shape[-1])
            layout = {"cols": cols, "rows": rows, "cell": cell, "channels": int(maps[layer].shape[-1]),
                      "peak": [round(float(v), 4) for v in maps[layer].max(axis=(0, 1))]}
            data = imaging.encode_png(sheet)
            cache.put(feature_keys[layer], data, layout, about={"kind": "features", "model": common["model"]})
            entries[layer] = (data, layout)
    result.features = {layer: (feature_keys[layer], entries[layer][1]) for layer in layers}

    if not classify:
        return result
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
    for layer in cam_layers:
        keys = [make_key(kind="cam", photo=photo.digest, layer=layer, method=method, cls=c, **common) for c in classes]
        missing = {k for k in keys if cache.get(k) is None}
        if missing:
            heat = lazy.cam(layer)(photo.pixels, classes)  # one backward pass serves every class
            for k, m in zip(keys, heat):
                if k not in missing:
                    continue
                heat_shown = imaging.resize(m, shown.shape[0], shown.shape[1])
                cache.put(k, imaging.encode_jpeg(imaging.overlay(shown, heat_shown)),
                          about={"kind": "cam", "model": common["model"]})
        result.cams[layer] = list(zip(classes, keys))
    return result
