"""The order of the stages, nothing else:

model → targets → filter tiles (optimize, cached) → photo tiles (cached) → manifest → site.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..config import BuildConfig, RenderSettings, public_path
from ..console import log
from ..errors import GalleryError
from ..folders import FolderLock, check_layout
from ..model import circuits, grad, graph, loading
from ..photos import cams, labels, sources
from ..render import cost
from ..render.optimize import channel_count
from ..site import manifest, pages
from ..site.folder import SiteFolder, identity
from .cache import Cache
from .filter_tiles import filter_tiles
from .photo_tiles import photo_tiles


@contextmanager
def stage(name: str, timings: dict):
    log(f"• {name}")
    start = time.monotonic()
    yield
    timings[name] = time.monotonic() - start


def select_targets(model, config: BuildConfig) -> dict[str, list[int]]:
    """``{layer: [filter indices]}`` from ``--layers`` and ``--filters``, validated."""
    names = graph.conv_layers(model)
    if not names:
        raise GalleryError(f"model {model.name!r} has no Conv2D, DepthwiseConv2D or SeparableConv2D layers")
    chosen = [graph.locate_conv(model, n).name for n in config.layers] if config.layers else names
    selection = {}
    for layer in chosen:
        indices = list(range(channel_count(model, layer)))[config.filters]
        if indices:
            selection[layer] = indices
        else:
            log(f"  {layer}: no filters in {config.filters.start}:{config.filters.stop} "
                f"(it has {channel_count(model, layer)}); skipped")
    if not selection:
        raise GalleryError("--filters selects no filter in any chosen layer")
    return selection


def build(config: BuildConfig) -> dict:
    """Run every stage; return the manifest. Raises :class:`GalleryError` for user errors.

    The build writes only into folders it owns (see :mod:`gallery.folders`); both are
    claimed and locked for the whole build before the model loads, and the files a killed
    build left half-written are swept away first.
    """
    loading.check_spec(config.model, config.weights)
    check_layout(Path(config.out), Path(config.cache))
    cache, out = Cache(config.cache), SiteFolder(config.out)
    with FolderLock(config.cache, "cache"):
        cache.claim()
        with FolderLock(config.out, "output"):
            out.claim()
            return _build(config, cache, out)


def _build(config: BuildConfig, cache: Cache, out: SiteFolder) -> dict:
    timings: dict[str, float] = {}
    with stage("load model", timings):
        model = loading.load_model(config.model, config.weights, safe_mode=config.safe_mode)
        loading.check_supported(model)
        preprocess = config.preprocess or loading.default_preprocess(config.model)
        selection = select_targets(model, config)
        grad.check_names(graph.all_layer_names(model))
        render = _fitted(model, selection, config.render)
        fingerprint = loading.fingerprint(model)
        title = loading.title(config.model, model)
        source = identity(loading.source(config.model, config.weights))
        slug = out.model_slug(title, source)
        log(f"  {title}: {len(selection)} conv layers, {sum(map(len, selection.values()))} filters, "
            f"preprocessing {preprocess!r}, fingerprint {fingerprint[:12]}")
    with stage("filter images", timings):
        tiles = filter_tiles(model, fingerprint, selection, render, preprocess, cache, config.variants)
    with stage("photos", timings):
        samples = sources.load_photos(config.images)
        classify = graph.has_classifier(model)
        names, labels_source, cam_note = None, None, None
        cam_layers: list[str] = []
        if classify:
            classes = int(model.outputs[0].shape[-1])
            names, labels_source = labels.class_names(classes, config.labels)
            cam_layers = [graph.locate(model, n).name for n in (config.cam_layers or [cams.default_layer(model)])]
        else:
            classes = None
            cam_note = (f"No Grad-CAM or predictions: {model.name!r} has no classifier head "
                        f"(its output has shape {tuple(model.outputs[0].shape)}, not one score per class).")
        results = photo_tiles(model, fingerprint, samples, list(selection), cam_layers, preprocess=preprocess,
                              cache=cache, top_k=config.top_k, methods=config.cam_methods,
                              fallback=config.photo_size, pages=config.photo_pages, examples=config.examples)
        if not results.photos:
            raise GalleryError("none of the photos could be read")
    reused = cache.hits
    with stage("pages", timings):
        info = manifest.model_entry(model, title=title, slug=slug, identity=source, source=public_path(config.model),
                                    fingerprint=fingerprint,
                                    preprocess=preprocess, classes=classes, labels_source=labels_source,
                                    cam_note=cam_note)
        settings = {"preset": config.preset, **config.render.key(), "filters": _describe(config.filters),
                    "variants": ", ".join(config.variants) or "none",
                    "photos": f"{len(results.photos)} ({sum(t.paged for t in results.photos)} with pages)",
                    "cam layers": ", ".join(cam_layers) or "none", "cam methods": ", ".join(config.cam_methods)}
        data, files = manifest.build(
            model_info=info, table=manifest.layer_table(model), filter_tiles=tiles,
            channels={layer: channel_count(model, layer) for layer in selection}, photos=results,
            class_names=names, settings=settings, command=config.command,
            circuits={layer: circuits.strongest_inputs(model, layer) for layer in selection},
            cam_sources={layer: graph.conv_source(model, layer) for layer in cam_layers})
        written = pages.render(data, files, cache, out)
    total = sum(timings.values())
    log(f"done in {total:.1f}s: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    log(f"cache {config.cache}: {cache.stored} tiles computed, {reused} reused"
        + (f", {cache.damaged} damaged entries replaced" if cache.damaged else ""))
    log(f"site {Path(config.out).resolve() / 'index.html'}: {written['pages']} pages and {written['tiles']} tiles "
        f"written, {written['unchanged']} unchanged"
        + (f", {written['removed']} no longer listed removed" if written["removed"] else ""))
    if config.prune:
        removed, freed = cache.prune(cache.used)
        log(f"pruned {removed} cache entries ({freed / 1e6:.1f} MB) that this build did not use")
    return data


def _fitted(model, selection, render: RenderSettings) -> RenderSettings:
    """``render`` with a batch that fits in memory; a tile size that cannot is refused here,
    before anything of that size is allocated."""
    batch = cost.fit_batch(cost.Costs(model), list(selection), render, grad.memory_bytes())
    if batch < render.batch:
        log(f"  {batch} images per batch (not {render.batch}): {render.size} px images need more memory")
        render = replace(render, batch=batch)
    return render


def _describe(filters: slice) -> str:
    start = "" if filters.start is None else filters.start
    stop = "" if filters.stop is None else filters.stop
    text = f"{start}:{stop}" + (f":{filters.step}" if filters.step else "")
    return "all" if text == ":" else text
