"""The order of the stages, nothing else:

model → targets → units (photos first, then a first look at every layer, then the rest)
→ executor → cache → manifest → site, the site written at once and refreshed as units
settle.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import PIL

from .. import imaging
from ..channels import BAND_SUFFIXES, Channels
from ..config import CARICATURE_LAYERS, BuildConfig, RenderSettings, parse_preprocess, public_path
from ..console import log, warn
from ..errors import GalleryError
from ..folders import FolderLock, check_layout, empty, first_missing, undo_created
from ..model import grad, graph, loading, precision, preprocess as prep
from ..model.table import layer_table
from ..photos import sanity, sources
from ..photos.activations import input_size
from ..render import cost, exact, kinds, params
from ..render.optimize import channel_count
from ..render.schedule import snapshot_steps
from ..site import manifest
from ..site.records import plain
from ..site.pages import TEMPLATES, SiteWriter
from ..site.folder import INVENTORY, SiteFolder
from . import estimate, facts, units
from .cache import TAG as CACHE_TAG, Cache
from .executors import executor
from .legacy import PeakScorer
from .progress import Progress
from .publish import Publisher
from .state import Gallery


def select_targets(model, config: BuildConfig) -> dict[str, list[int]]:
    """``{layer: [filter indices]}`` from ``--layers`` and ``--filters``, validated."""
    names = graph.conv_layers(model)
    if not names:
        raise GalleryError(f"model {graph.shown_name(model)!r} has no Conv2D, DepthwiseConv2D or SeparableConv2D layers")
    if config.layers:
        graph.check_conv_names(model, config.layers, loading.title(config.model, model))
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


def caricature_layers(model, config: BuildConfig, selection: dict[str, list[int]],
                      channels: Channels) -> tuple[str, ...]:
    """The layers that draw caricatures: ``--caricatures``, each one of the rendered layers
    (its caricature sits beside its feature maps), or by default :data:`CARICATURE_LAYERS`
    spread over their depth, the deepest included: the first of a long selection is left
    out, since a layer that near the pixels matches a photo by copying it. Only RGB models
    draw them (a caricature is optimized against the photo as the model sees it in colour)."""
    layers = list(selection)
    if not channels.plain:
        if config.caricatures not in (None, "auto", ()):
            raise GalleryError(f"--caricatures: {channels.count}-channel models draw none (only RGB models do); "
                               "leave it out or give --caricatures none")
        return ()
    if config.caricatures in (None, "auto"):
        n = len(layers)
        return tuple(dict.fromkeys(layers[-(-n * k // CARICATURE_LAYERS) - 1] for k in range(1, CARICATURE_LAYERS + 1)))
    graph.check_conv_names(model, config.caricatures, loading.title(config.model, model))
    chosen = tuple(dict.fromkeys(graph.locate_conv(model, name).name for name in config.caricatures))
    outside = [name for name in chosen if name not in selection]
    if outside:
        raise GalleryError(f"--caricatures: {', '.join(map(repr, outside))} not among the layers this build renders "
                           f"({', '.join(layers[:6])}{', …' if len(layers) > 6 else ''}); add "
                           f"{'it' if len(outside) == 1 else 'them'} to --layers, or choose from those")
    return chosen


def layer_listing(config: BuildConfig) -> list[str]:
    """``--list-layers``: the model's conv layers, their output shapes and filter counts."""
    loading.check_spec(config.model, config.weights)
    model = loading.load_model(config.model, config.weights, safe_mode=config.safe_mode)
    shapes = {row["name"]: row["shape"] or "?" for row in layer_table(model)}
    counts = {name: channel_count(model, name) for name in graph.conv_layers(model)}
    rows = [(name, type(graph.locate(model, name).layer).__name__, shapes.get(name, "?"), f"{count:,}")
            for name, count in counts.items()]
    total = sum(counts.values())
    head = ("layer", "type", "output", "filters")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [f"{loading.title(config.model, model)}: {len(rows)} conv layers, {total:,} filters "
            "(output shapes with ? take any size)", line(head), *map(line, rows)]


def build(config: BuildConfig) -> dict:
    """Run every stage; return the manifest as plain data (what ``manifest.json`` holds).
    Raises :class:`GalleryError` for user errors.

    The build writes only into folders it owns (see :mod:`gallery.folders`); both are
    claimed and locked for the whole build before the model loads, and the files a killed
    build left half-written are swept away first.
    """
    loading.check_spec(config.model, config.weights)
    _check_trajectory(config)
    check_layout(Path(config.out), Path(config.cache), protected=(Path(__file__).resolve().parents[1], TEMPLATES))
    cache, out = Cache(config.cache), SiteFolder(config.out)
    out.check()  # a refused --out must not leave a new cache behind
    cache.check()
    # A build that fails before it writes anything of use leaves no folder it made.
    made = [(Path(folder), first_missing(Path(folder)), empty(Path(folder)), marks)
            for folder, marks in ((config.out, {INVENTORY}), (config.cache, {CACHE_TAG}))]
    try:
        with FolderLock(config.cache, "cache"):
            cache.claim()
            with FolderLock(config.out, "output"):
                out.claim()
                return _build(config, cache, out)
    except BaseException:
        for folder, top, was_empty, marks in made:
            if top is not None or was_empty:
                undo_created(folder, top, marks)
        raise


def _build(config: BuildConfig, cache: Cache, out: SiteFolder) -> dict:
    """Plan units → executor → cache → site, the site refreshed while units settle."""
    started = time.monotonic()
    log("• load model")
    model, title, channels, preprocess = _load(config)
    selection = select_targets(model, config)
    grad.check_names(graph.all_layer_names(model))
    costs = cost.Costs(model)
    render = precision.settings_for(model, config.render, config.render_if_depthwise)
    if render is not config.render:
        log(f"  {render.precision} steps, {render.steps} of them: this CPU's bf16 units are slower for "
            "depthwise convolutions than float32")
    render, tile_side = facts.small_tiles(model, render)
    render = _fitted(costs, selection, render)
    fingerprint = loading.fingerprint(model)
    log(f"  {title}: {len(selection)} conv layers, "
        f"{sum(map(len, selection.values()))} filters, preprocessing {preprocess!r}, fingerprint {fingerprint[:12]}")
    photos = _channel_photos(sources.load_photos(config.images), config, channels, title)
    size = input_size(model, config.photo_size)
    about = facts.about(model, config, size)
    job = units.Job(fingerprint=fingerprint, render=render, preprocess=preprocess,
                    selection={k: tuple(v) for k, v in selection.items()}, variants=config.variants,
                    cam_layers=tuple(about["cam_layers"]), methods=config.cam_methods,
                    ranks=min(config.top_k, about["classes"] or 0), input=size,
                    exact=tuple(layer for layer in selection if exact.linear(model, layer, preprocess)),
                    coarse=kinds.coarse(model, graph.conv_layers(model)), depthwise=graph.has_depthwise(model),
                    trajectory=config.trajectory, channels=channels,
                    caricatures=caricature_layers(model, config, selection, channels),
                    curve_points=config.curve_points, randomize=config.randomize)
    if job.randomize and job.ranks:  # refused before any work when the model has fewer layers
        try:
            sanity.top_layers(model, job.randomize)
        except GalleryError as exc:
            raise GalleryError(f"--randomize: {exc}") from None
    gallery = Gallery(job, photos, config.photo_pages, config.top_k, config.examples)
    for line in facts.skipped(config, about, title):
        log(line)

    log("• plan")
    plan = [*units.photo_units(job, photos, config.photo_pages, about["classes"] is not None),
            *units.filter_units(job)]
    tasks, found = _settle_cached(plan, model, job, costs, gallery, cache)
    estimated = _estimate(model, config, job, costs, tasks, len(photos)) if tasks else None

    fixed = facts.gather(model, config, job, about, out, cache, tile_side)
    site = Publisher(SiteWriter(out, cache), lambda status: _manifest(fixed, config, job, gallery, cache, status))
    if tasks:
        _run(config, model, job, costs, tasks, found, estimated, gallery, cache, site, len(photos))

    log("• pages")
    data, _ = site.refresh(None, force=True)
    _report(config, cache, site, started)
    return plain(data)


def _load(config: BuildConfig):
    """The model, checked, its title and channels, and the preprocessing its inputs get."""
    model = loading.load_model(config.model, config.weights, safe_mode=config.safe_mode)
    loading.check_supported(model)
    title = loading.title(config.model, model)
    channels = Channels.of(loading.input_channels(model), config.rgb_channels, title)
    preprocess = config.preprocess or loading.default_preprocess(config.model)
    if isinstance(preprocess, str):
        preprocess = parse_preprocess(preprocess)  # one spelling per preprocessing, in keys and on pages
    prep.check(preprocess, channels.count, title)
    params.check_channels(config.render.parameterization, channels, title)
    if config.preprocess is None and loading.is_model_file(config.model) and not loading.scales_its_inputs(model):
        pixels, conventions = ("RGB", "caffe, tf or torch") if channels.plain else (
            f"{channels.count}-channel", f"tf or mean=…,std=… ({channels.count} of each)")
        warn(f"{public_path(config.model)} gets no input preprocessing: its pixels arrive as 0-255 {pixels} and it has "
             f"no Rescaling or Normalization layer; if it was trained on scaled pixels, pass --preprocess "
             f"{conventions} (--preprocess none silences this)")
    return model, title, channels, preprocess


def _settle_cached(plan: list, model, job, costs, gallery: Gallery, cache: Cache) -> tuple[list, dict]:
    """Settle every unit the cache holds whole; ``(tasks, found)`` for the rest, ``found``
    holding by unit the entries each still has."""
    tasks, found = [], {}
    rescore = PeakScorer(model, job)
    for uid, unit in enumerate(plan):
        entries = units.lookup(unit, cache)
        rescore(unit, entries, cache)
        if len(entries) == len(unit.entries):
            gallery.absorb(unit, entries, cache)
        else:
            tasks.append(units.Task(uid, unit, frozenset(e.key for e in unit.entries) - set(entries)))
            found[uid] = entries
    log(f"  {len(plan)} units: {len(plan) - len(tasks)} settled from the cache, {len(tasks)} to run "
        f"({cost.describe(sum(t.unit.flops(job, costs) for t in tasks))})")
    if cache.outdated:
        log(f"  {cache.outdated} cache entries written by an older cnn-gallery are recomputed: their records "
            "did not bind them to the key they are stored under")
    if rescore.scored:
        log(f"  {rescore.scored} cached filter images scored from their saved pixels for their peak, "
            "which older builds did not record")
    return tasks, found


def _estimate(model, config: BuildConfig, job, costs, tasks: list, photos: int):
    """Before any long work: what it is, and how long it will take here."""
    estimated = estimate.calibrate(model, job, costs, tasks)
    log(*estimate.plan_lines(job, tasks, photos, estimated, config.executor))
    warning = estimate.long_warning(estimated, sys.stderr.isatty())
    if warning:
        warn(warning)
    return estimated


def _run(config: BuildConfig, model, job, costs, tasks, found, estimated, gallery: Gallery, cache: Cache,
         site: Publisher, photos: int) -> None:
    """Run the tasks on the executor, settling each into the cache and the site as it ends."""
    progress = Progress({t.uid: t.unit.stages(job, costs, t.parts) for t in tasks},
                        cached_images=gallery.images, total_images=gallery.filters.total,
                        cached_photos=gallery.photos_done, total_photos=photos,
                        prior=estimated.prior)
    site.refresh(progress.status(), force=True)  # the whole site at once, pending parts shown so
    log(f"• run ({config.executor})")
    runner = None
    try:
        # Inside: a Ray that cannot be joined stops the build as any other failure does,
        # and the pages say so.
        runner = executor(config.executor, model, job, source=_portable_model(config, model),
                          address=config.ray_address, worker_cpus=config.worker_cpus, debug=config.debug)
        for task, result in runner.run(tasks, progress):
            settled = units.store(task, result.produced, found.pop(task.uid), cache, result.skipped)
            gallery.absorb(task.unit, settled, cache, result.skipped)
            if gallery.photos.settled and not gallery.photos.tiles:
                raise GalleryError("none of the photos could be read")
            progress.tail = site.spent  # what the final writing will take, about
            site.refresh(progress.status())
    except BaseException:
        site.interrupted(progress.status())
        raise
    finally:
        progress.close()
        if runner is not None:
            runner.close()


def _report(config: BuildConfig, cache: Cache, site: Publisher, started: float) -> None:
    """The build's closing lines, and ``--prune``."""
    written = site.written
    log(f"done in {time.monotonic() - started:.1f}s")
    log(f"cache {config.cache}: {cache.stored} tiles computed, {cache.hits} reused"
        + (f", {cache.damaged} damaged entries replaced" if cache.damaged else ""))
    log(f"site {Path(config.out).resolve() / 'index.html'}: {written['pages']} pages and {written['tiles']} tiles "
        f"written{f' over {site.refreshes} refreshes' if site.refreshes > 1 else ''}, {written['unchanged']} unchanged"
        + (f", {written['removed']} no longer listed removed" if written["removed"] else ""))
    if config.prune:
        removed, freed = cache.prune(cache.used)
        log(f"pruned {removed} cache entries ({freed / 1e6:.1f} MB) that this build did not use")


def _channel_photos(photos: list, config: BuildConfig, channels: Channels, title: str) -> list:
    """The photos, refused in one line before any work where they cannot carry the model's
    channels: a model of 2 or more than 3 channels reads them from arrays alone."""
    if not channels.banded:
        return photos
    wrong = [p for p in photos if p.path is None or p.path.suffix.lower() not in BAND_SUFFIXES]
    if wrong:
        shown = "the bundled sample photos" if not config.images else repr(public_path(wrong[0].path))
        raise GalleryError(f"{title!r} takes {channels.count}-channel images, so --images must be .npy arrays of "
                           f"shape H×W×{channels.count} (or TIFFs with {channels.count} channels); got {shown}")
    return photos


def _check_trajectory(config: BuildConfig) -> None:
    """``--trajectory N``: enough places in the schedule to take N snapshots, and a Pillow
    that writes animated WebP; checked before anything is written."""
    if not config.trajectory:
        return
    for render in filter(None, (config.render, config.render_if_depthwise)):
        snapshot_steps(render, config.trajectory)
    if not imaging.animated_webp():
        raise GalleryError(f"--trajectory {config.trajectory}: this Pillow ({PIL.__version__}) cannot write animated "
                           "WebP; install a Pillow built with libwebp (the wheels on PyPI are), or leave it off")


def _render_settings(job) -> dict:
    """The settings an optimized layer renders with (a depthwise model's own step and slope
    included), and what its coarse layers take instead, from the one rule (RenderSettings.for_layer)."""
    usual = job.render.for_layer(False, False, job.depthwise).key()
    coarse = job.render.for_layer(False, True, job.depthwise).key() if job.coarse else usual
    changed = {name: value for name, value in coarse.items() if usual.get(name) != value}
    return {**usual, **({"coarse layers": ", ".join(f"{k} {v}" for k, v in changed.items())} if changed else {})}


def _manifest(fixed: dict, config: BuildConfig, job, gallery: Gallery, cache: Cache, status: dict | None):
    """The manifest of what the build knows now, and the files it publishes."""
    results = gallery.photos.results()
    settings = {"preset": config.preset, **_render_settings(job),
                "filters": _describe(config.filters),
                "variants": ", ".join(config.variants) or "none",
                "photos": f"{len(results.photos)} ({sum(t.paged for t in results.photos)} with pages)",
                "cam layers": ", ".join(job.cam_layers) or "none", "cam methods": ", ".join(config.cam_methods),
                **({"trajectory": f"{job.trajectory} snapshots"} if job.trajectory else {}),
                "caricatures": ", ".join(job.caricatures) or "none",
                "curve points": job.curve_points,
                "randomization check": f"top {job.randomize} layers" if job.randomize else "off"}
    return manifest.build(**fixed, filter_tiles=gallery.filters.tiles(), photos=results, settings=settings,
                          command=config.command, status=status, collages=gallery.filters.collages(cache),
                          linear=job.exact, curve_points=job.curve_points)


def _portable_model(config: BuildConfig, model):
    """How a remote worker gets the model: see :class:`~gallery.orchestrate.cluster.ModelSource`."""
    if config.executor == "local":
        return None
    from .cluster import ModelSource

    return ModelSource.of(config.model, model, config.safe_mode)


def _fitted(costs, selection, render: RenderSettings) -> RenderSettings:
    """``render`` with a batch that fits in memory; a tile size that cannot is refused here,
    before anything of that size is allocated."""
    batch = cost.fit_batch(costs, list(selection), render, grad.memory_bytes())
    if batch < render.batch:
        log(f"  {batch} images per batch (not {render.batch}): {render.size} px images need more memory")
        render = replace(render, batch=batch)
    return render


def _describe(filters: slice) -> str:
    start = "" if filters.start is None else filters.start
    stop = "" if filters.stop is None else filters.stop
    text = f"{start}:{stop}" + (f":{filters.step}" if filters.step else "")
    return "all" if text == ":" else text
