"""Filter tiles: batched activation maximization, computed once and cached.

Each filter's image and its layer-page thumbnail are fetched from the cache when it holds
them; the optimizer runs only on the filters it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass


from . import imaging
from .cache import Cache, make_key
from .config import RenderSettings
from .optimize import FilterRenderer
from .progress import Progress

THUMB_SIDE = 96  # layer-page thumbnails, sized for their slot


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
