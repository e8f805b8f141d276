"""Filter tiles: batched activation maximization, computed once and cached.

Each filter gets its main image (the channel objective) and, when asked, variant images
(negative, diversity, neuron). Every image is fetched from the cache when it holds it;
the optimizer runs only on the filters that lack one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import imaging
from ..config import RenderSettings
from ..console import log
from ..model import grad
from ..render.objectives import VARIANTS
from ..render.optimize import Renderers
from .cache import Cache, make_key, number
from .progress import Progress

THUMB_SIDE = 96  # layer-page thumbnails, sized for their slot
MAIN = "channel"
ACTIVATION = {"activation": number}  # what a filter image's record must hold


@dataclass
class VariantImage:
    key: str
    activation: float


@dataclass
class FilterTile:
    index: int
    key: str
    thumb: str
    activation: float
    variants: dict[str, list[VariantImage]] = field(default_factory=dict)


def filter_tiles(model, fingerprint: str, selection: dict[str, list[int]], settings: RenderSettings,
                 preprocess: str, cache: Cache, variants: tuple[str, ...] = ()) -> dict[str, list[FilterTile]]:
    """``{layer: [FilterTile]}``, rendering only the images the cache lacks."""
    kinds = (MAIN, *[v for v in variants if v != MAIN])

    def key(layer, index, variant, copy):
        return make_key(kind="filter", model=fingerprint, layer=layer, filter=index, variant=variant, copy=copy,
                        preprocess=preprocess, **settings.key())

    images: dict[tuple, VariantImage] = {}
    fresh: dict[str, bytes] = {}  # PNGs rendered now, so thumbnails need not read them back
    missing: dict[tuple[str, str], list[int]] = {}
    for variant in kinds:
        for layer, indices in selection.items():
            for i in indices:
                # Every copy is looked up, even past a miss: the copies still cached are
                # kept when the lost one makes the filter render again.
                lost = False
                for c in range(VARIANTS[variant].copies):
                    k = key(layer, i, variant, c)
                    entry = cache.get(k, require=ACTIVATION)
                    if entry is None:
                        lost = True
                    else:
                        images[(layer, i, variant, c)] = VariantImage(k, float(entry[1]["activation"]))
                if lost:
                    missing.setdefault((variant, layer), []).append(i)
    work = sum(len(v) * VARIANTS[variant].copies for (variant, _), v in missing.items())
    if work:
        with Progress("filter images", work * settings.steps, unit=" image-steps") as bar, \
                Renderers(model, settings, preprocess, missing) as renderers:
            for (variant, layer), indices in missing.items():
                copies = VARIANTS[variant].copies
                renderer = renderers.ready(variant, layer)
                per_batch, start = renderer.filters_per_batch, 0
                while start < len(indices):
                    batch = indices[start:start + per_batch]
                    note = f"{layer} filters {batch[0]}–{batch[-1]}" + ("" if variant == MAIN else f" ({variant})")
                    advance = (lambda k, n=len(batch) * copies: bar.advance(n * k, note))
                    try:
                        done, acts = renderer.render(batch, on_step=advance)
                    except Exception as exc:
                        if not grad.is_out_of_memory(exc) or per_batch == 1:
                            raise
                        # Halve and retry: the batch fits whatever the device's memory.
                        per_batch //= 2
                        log("", f"{layer}: out of device memory; {per_batch * copies} images per batch from now on")
                        continue
                    start += len(batch)
                    for j, (image, act) in enumerate(zip(done, acts)):
                        i, c = batch[j // copies], j % copies
                        if (layer, i, variant, c) in images:  # a cached sibling of a lost copy
                            continue
                        k = key(layer, i, variant, c)
                        fresh[k] = imaging.encode_png(image)
                        cache.put(k, fresh[k], {"activation": float(act)},
                                  about={"kind": "filter", "model": fingerprint, "layer": layer})
                        images[(layer, i, variant, c)] = VariantImage(k, float(act))
    return {layer: [_tile(cache, i, [[images[(layer, i, v, c)] for c in range(VARIANTS[v].copies)] for v in kinds],
                          kinds, fresh)
                    for i in indices]
            for layer, indices in selection.items()}


def _tile(cache: Cache, index: int, found: list[list[VariantImage]], kinds: tuple[str, ...],
          fresh: dict[str, bytes]) -> FilterTile:
    main = found[0][0]
    thumb = make_key(kind="thumb", source=main.key, side=THUMB_SIDE)
    if cache.get(thumb) is None:
        png = fresh.get(main.key) or cache.get(main.key)[0]
        small = imaging.resize(imaging.decode(png), THUMB_SIDE, THUMB_SIDE)
        cache.put(thumb, imaging.encode_jpeg(small, quality=85), about={"kind": "thumb"})
    return FilterTile(index, main.key, thumb, main.activation, dict(zip(kinds[1:], found[1:])))
