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
from ..config import BuildConfig, RenderSettings, public_path
from ..console import log, warn
from ..errors import GalleryError
from ..folders import FolderLock, check_layout, empty, first_missing, undo_created
from ..model import circuits, grad, graph, guided, loading
from ..photos import cams, labels, sanity, sources
from ..photos.activations import input_size
from ..photos.saliency import GUIDED
from ..render import cost, exact
from ..render.optimize import channel_count, snapshot_steps
from ..site import manifest
from ..site.pages import TEMPLATES, SiteWriter
from ..site.folder import INVENTORY, SiteFolder, identity
from . import estimate, units
from .cache import TAG as CACHE_TAG, Cache, make_key
from .executors import executor
from .progress import Progress
from .publish import Publisher
from .rescore import PeakScorer
from .state import Gallery


def select_targets(model, config: BuildConfig) -> dict[str, list[int]]:
    """``{layer: [filter indices]}`` from ``--layers`` and ``--filters``, validated."""
    names = graph.conv_layers(model)
    if not names:
        raise GalleryError(f"model {model.name!r} has no Conv2D, DepthwiseConv2D or SeparableConv2D layers")
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


def layer_listing(config: BuildConfig) -> list[str]:
    """``--list-layers``: the model's conv layers, their output shapes and filter counts."""
    loading.check_spec(config.model, config.weights)
    model = loading.load_model(config.model, config.weights, safe_mode=config.safe_mode)
    shapes = {row["name"]: row["shape"] or "?" for row in manifest.layer_table(model)}
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
    """Run every stage; return the manifest. Raises :class:`GalleryError` for user errors.

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
    model = loading.load_model(config.model, config.weights, safe_mode=config.safe_mode)
    loading.check_supported(model)
    preprocess = config.preprocess or loading.default_preprocess(config.model)
    if config.preprocess is None and loading.is_model_file(config.model) and not loading.scales_its_inputs(model):
        warn(f"{public_path(config.model)} gets no input preprocessing: its pixels arrive as 0-255 RGB and it has "
             "no Rescaling or Normalization layer; if it was trained on scaled pixels, pass --preprocess "
             "caffe, tf or torch (--preprocess none silences this)")
    selection = select_targets(model, config)
    grad.check_names(graph.all_layer_names(model))
    costs = cost.Costs(model)
    render = _fitted(costs, selection, config.render)
    fingerprint = loading.fingerprint(model)
    log(f"  {loading.title(config.model, model)}: {len(selection)} conv layers, "
        f"{sum(map(len, selection.values()))} filters, preprocessing {preprocess!r}, fingerprint {fingerprint[:12]}")
    photos = sources.load_photos(config.images)
    size = input_size(model, config.photo_size)
    about = _about(model, config, size)
    job = units.Job(fingerprint, render, preprocess, {k: tuple(v) for k, v in selection.items()}, config.variants,
                    tuple(about["cam_layers"]), config.cam_methods, min(config.top_k, about["classes"] or 0), size,
                    tuple(layer for layer in selection if exact.linear(model, layer, preprocess)),
                    config.trajectory, config.curve_points, config.randomize)
    if job.randomize and job.ranks:  # refused before any work when the model has fewer layers
        try:
            sanity.top_layers(model, job.randomize)
        except GalleryError as exc:
            raise GalleryError(f"--randomize: {exc}") from None
    gallery = Gallery(job, photos, config.photo_pages, config.top_k, config.examples)
    for line in _skipped(config, job, about, loading.title(config.model, model)):
        log(line)

    log("• plan")
    plan = [*units.photo_units(job, photos, config.photo_pages, about["classes"] is not None),
            *units.filter_units(job)]
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
        f"({cost.describe(sum(units.flops(t.unit, job, costs) for t in tasks))})")
    if cache.outdated:
        log(f"  {cache.outdated} cache entries written by an older cnn-gallery are recomputed: their records "
            "did not bind them to the key they are stored under")
    if rescore.scored:
        log(f"  {rescore.scored} cached filter images scored from their saved pixels for their peak, "
            "which older builds did not record")

    if tasks:
        # Before any long work: what it is, and how long it will take here.
        estimated = estimate.calibrate(model, job, costs, tasks)
        log(*estimate.plan_lines(job, tasks, len(photos), estimated, config.executor))
        warning = estimate.long_warning(estimated, sys.stderr.isatty())
        if warning:
            warn(warning)

    fixed = _fixed_parts(model, config, job, about, out, cache)
    site = Publisher(SiteWriter(out, cache), lambda status: _manifest(fixed, config, job, gallery, cache, status))
    if tasks:
        progress = Progress({t.uid: units.cost_stages(t.unit, job, costs, t.parts) for t in tasks},
                            cached_images=len(gallery.images), total_images=gallery.images_total,
                            cached_photos=len(gallery.tiles) + len(gallery.broken), total_photos=len(photos),
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
                if gallery.photos_settled and not gallery.tiles:
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

    log("• pages")
    data, _ = site.refresh(None, force=True)
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
    return data


def _check_trajectory(config: BuildConfig) -> None:
    """``--trajectory N``: enough places in the schedule to take N snapshots, and a Pillow
    that writes animated WebP; checked before anything is written."""
    if not config.trajectory:
        return
    snapshot_steps(config.render, config.trajectory)
    if not imaging.animated_webp():
        raise GalleryError(f"--trajectory {config.trajectory}: this Pillow ({PIL.__version__}) cannot write animated "
                           "WebP; install a Pillow built with libwebp (the wheels on PyPI are), or leave it off")


def _skipped(config: BuildConfig, job, about: dict, title: str) -> list[str]:
    """One line for each option the build asked for that cannot apply here, and why."""
    lines = []
    if about["classes"] is None and (config.cam_methods != BuildConfig.cam_methods or config.cam_layers
                                     or config.randomize):
        asked = [f"--cam-method {','.join(config.cam_methods)}"] if config.cam_methods != BuildConfig.cam_methods else []
        asked += [f"--cam-layers {','.join(config.cam_layers)}"] if config.cam_layers else []
        asked += [f"--randomize {config.randomize}"] if config.randomize else []
        lines.append(f"note: {' and '.join(asked)} skipped: {title} has no classifier head, so there are no "
                     "classes to explain")
    return lines


def _about(model, config: BuildConfig, size: tuple[int, int]) -> dict:
    """Class names, CAM layers and the note shown when the model has no classifier."""
    if not graph.has_classifier(model):
        shape = "×".join(map(str, graph.output_shape(model, size)))
        return {"classes": None, "names": None, "labels_source": None, "cam_layers": [],
                "cam_note": f"No predictions or class activation maps: {loading.title(config.model, model)} has no "
                            f"classifier head (its output is {shape} for a {size[0]}×{size[1]} input, not one score per "
                            "class)."}
    classes = int(model.outputs[0].shape[-1])
    names, labels_source = labels.class_names(classes, config.labels)
    layers = [_cam_layer(model, n) for n in (config.cam_layers or [cams.default_layer(model)])]
    if GUIDED in config.cam_methods:
        guided.check(model)  # before any work: a model whose activations are not all ReLUs is refused
    return {"classes": classes, "names": names, "labels_source": labels_source, "cam_layers": layers,
            "cam_note": None}


def _cam_layer(model, name: str) -> str:
    """A ``--cam-layers`` entry's qualified name, refused before any work unless the layer
    gives spatial maps (a conv layer, or what follows one before the pooling) whose
    channels a class activation map can weigh."""
    path = graph.locate(model, name)
    try:
        maps = len(path.layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        maps = path.name in graph.conv_layers(model)
    if not maps:
        convs = graph.conv_layers(model)
        raise GalleryError(f"--cam-layers: {name!r} is a {type(path.layer).__name__} with no spatial maps to weigh; "
                           f"give a conv layer, such as {', '.join(map(repr, convs[-3:]))}"
                           + (f" (the last 3 of {len(convs)}; --list-layers shows all)" if len(convs) > 3 else ""))
    return path.name


def _fixed_parts(model, config, job, about, out: SiteFolder, cache: Cache) -> dict:
    """What the manifest says of the model, the same on every refresh: worked out once."""
    title = loading.title(config.model, model)
    source = identity(loading.source(config.model, config.weights))
    info = manifest.model_entry(model, title=title, slug=out.model_slug(title, source), identity=source,
                                source=public_path(config.model), fingerprint=job.fingerprint,
                                preprocess=job.preprocess, classes=about["classes"],
                                labels_source=about["labels_source"], cam_note=about["cam_note"], size=job.input)
    return {"model_info": info, "table": manifest.layer_table(model, job.input), "class_names": about["names"],
            "channels": {layer: channel_count(model, layer) for layer in job.selection},
            "circuits": {layer: circuits.strongest_inputs(model, layer) for layer in job.selection},
            "cam_sources": {layer: graph.conv_source(model, layer) for layer in job.cam_layers},
            "activations": {layer: graph.activation_name(graph.locate(model, layer).layer) or "linear"
                            for layer in job.selection},
            "kernels": _kernel_sheets(model, job, cache)}


def _kernel_sheets(model, job, cache: Cache) -> dict[str, dict]:
    """First-layer kernels, one sheet per layer that has them (see :func:`circuits.pixel_kernels`)."""
    sheets = {}
    for layer in job.selection:
        found = circuits.pixel_kernels(model, layer, job.preprocess)
        if found is None:
            continue
        cells, scale = found
        key = make_key(kind="kernels", model=job.fingerprint, layer=layer, preprocess=job.preprocess)
        if cache.get(key) is None:
            cache.put(key, imaging.encode_png(imaging.contact_sheet(cells)), about={"kind": "kernels"})
        cols, rows = imaging.sheet_layout(len(cells))
        sheets[layer] = {"key": key, "cols": cols, "rows": rows, "scale": scale,
                         "shape": "×".join(map(str, cells.shape[1:]))}
    return sheets


def _manifest(fixed: dict, config: BuildConfig, job, gallery: Gallery, cache: Cache, status: dict | None):
    """The manifest of what the build knows now, and the files it publishes."""
    results = gallery.photo_results()
    settings = {"preset": config.preset, **job.render.key(), "filters": _describe(config.filters),
                "variants": ", ".join(config.variants) or "none",
                "photos": f"{len(results.photos)} ({sum(t.paged for t in results.photos)} with pages)",
                "cam layers": ", ".join(job.cam_layers) or "none", "cam methods": ", ".join(config.cam_methods),
                **({"trajectory": f"{job.trajectory} snapshots"} if job.trajectory else {}),
                "curve points": job.curve_points,
                "randomization check": f"top {job.randomize} layers" if job.randomize else "off"}
    return manifest.build(**fixed, filter_tiles=gallery.filter_tiles(), photos=results, settings=settings,
                          command=config.command, status=status, collages=gallery.collages(cache),
                          linear=job.exact, curve_points=job.curve_points)


def _portable_model(config: BuildConfig, model):
    """How a remote worker gets the model: see :class:`~gallery.build.cluster.ModelSource`."""
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
