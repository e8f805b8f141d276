"""Model facts: what the site says of the model, gathered once, before the site room.

Everything the pages say that must be read from the model (its layer table and shapes,
its classes and CAM layers, each filter's strongest inputs, the first layers' kernels)
and the versions of the software that made the build are worked out here, once per build.
The site gets them as plain data: :mod:`gallery.site` imports no Keras.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from importlib import metadata

import keras

from .. import imaging
from ..config import BuildConfig, RenderSettings, public_path
from ..console import log
from ..errors import GalleryError
from ..model import circuits, graph, guided, loading
from ..model.table import layer_table, shape_text
from ..photos import cams, labels
from ..photos.saliency import GUIDED
from ..render.optimize import channel_count
from ..site.folder import SiteFolder, identity
from .cache import Cache, make_key


def versions() -> dict[str, str]:
    """Python, the Keras backend and the packages that made the build, for the pages'
    "reproduce" section."""
    found = {"python": platform.python_version(), "keras backend": keras.backend.backend()}
    for package in ("cnn-gallery", "keras", "tensorflow", "jax", "torch", "numpy", "pillow", "jinja2", "matplotlib"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def about(model, config: BuildConfig, size: tuple[int, int]) -> dict:
    """Class names, CAM layers and the note shown when the model has no classifier."""
    if not graph.has_classifier(model):
        shape = "×".join(map(str, graph.output_shape(model, size)))
        return {"classes": None, "names": None, "labels_source": None, "cam_layers": [],
                "cam_note": f"No predictions or class activation maps: {loading.title(config.model, model)} has no "
                            f"classifier head (its output is {shape} for a {size[0]}×{size[1]} input, not one score per "
                            "class)."}
    classes = int(model.outputs[0].shape[-1])
    names, labels_source = labels.class_names(classes, config.labels)
    layers = [cam_layer(model, n) for n in (config.cam_layers or [cams.default_layer(model)])]
    if GUIDED in config.cam_methods:
        guided.check(model)  # before any work: a model whose activations are not all ReLUs is refused
    return {"classes": classes, "names": names, "labels_source": labels_source, "cam_layers": layers,
            "cam_note": None}


def cam_layer(model, name: str) -> str:
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


def skipped(config: BuildConfig, about: dict, title: str) -> list[str]:
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


def model_entry(model, *, title: str, slug: str, identity: str, source: str, fingerprint: str, preprocess: str,
                classes: int | None, labels_source: str | None, cam_note: str | None,
                size: tuple[int, int], channels=None, tile_side: int | None = None) -> dict:
    """The manifest's ``model``: what the index and the model page say of it."""
    # Named only where they differ from an RGB model's tiles at the size asked for, so such
    # a model's manifest reads as it did before other channel counts existed.
    extra = {}
    if channels is not None and not channels.plain:
        extra["channels"] = {"count": channels.count, "rgb": list(channels.rgb) if channels.rgb else None,
                             "about": channels.describe(), "photo_note": channels.photo_note(),
                             "fill_note": channels.fill_note()}
    if tile_side is not None:
        extra["tile_side"] = tile_side
    return {
        "name": title,
        "slug": slug,
        "identity": identity,
        "source": source,
        "keras_name": model.name,
        "fingerprint": fingerprint,
        "params": int(model.count_params()),
        "input_shape": shape_text((*size, model.inputs[0].shape[-1])),
        "output_shape": shape_text(graph.output_shape(model, size)),
        "preprocess": preprocess,
        "classes": classes,
        "labels_source": labels_source,
        "cam_note": cam_note,
        **extra,
    }


def gather(model, config: BuildConfig, job, about: dict, out: SiteFolder, cache: Cache,
           tile_side: int | None) -> dict:
    """What the manifest says of the model, the same on every refresh: worked out once,
    as the keyword arguments of :func:`gallery.site.manifest.build` that do not change.
    ``tile_side``: as :func:`small_tiles` decided."""
    title = loading.title(config.model, model)
    source = identity(loading.source(config.model, config.weights))
    info = model_entry(model, title=title, slug=out.model_slug(title, source), identity=source,
                       source=public_path(config.model), fingerprint=job.fingerprint,
                       preprocess=job.preprocess, classes=about["classes"],
                       labels_source=about["labels_source"], cam_note=about["cam_note"], size=job.input,
                       channels=job.channels, tile_side=tile_side)
    return {"model_info": info, "table": layer_table(model, job.input), "class_names": about["names"],
            "channels": {layer: channel_count(model, layer) for layer in job.selection},
            "circuits": {layer: circuits.strongest_inputs(model, layer) for layer in job.selection},
            "cam_sources": {layer: graph.conv_source(model, layer) for layer in job.cam_layers},
            "activations": {layer: graph.activation_name(graph.locate(model, layer).layer) or "linear"
                            for layer in job.selection},
            "kernels": kernel_sheets(model, job, cache), "versions": versions()}


# Fixed inputs of this many pixels a side or more are not small: tiles keep the size asked for.
SMALL_INPUT = 64


def small_tiles(model, render: RenderSettings) -> tuple[RenderSettings, int | None]:
    """``render`` at the model's own input size where it fixes a small one (16 to 63 pixels a
    side, such as 28×28 digits or 32×32 CIFAR) smaller than the tiles asked for: a tile the
    size of what the model was made to see, shown enlarged on the pages. Below 16 pixels
    (tiles' least size) and from :data:`SMALL_INPUT` on, tiles keep the size asked for.

    Also the tiles' side where it is then the model's own small input (made so here, or
    asked for), which the pages say and show every tile enlarged crisp; ``None`` otherwise."""
    h, w = model.inputs[0].shape[1:3]
    side = min(h or 0, w or 0)
    if 16 <= side < SMALL_INPUT and side < render.size:
        log(f"  tiles of {side}×{side} px (not {render.size}): the model takes {h}×{w} images")
        render = replace(render, size=side)
    return render, (side if render.size == side < SMALL_INPUT else None)


def kernel_sheets(model, job, cache: Cache) -> dict[str, dict]:
    """First-layer kernels, one sheet per layer that has them (see
    :func:`~gallery.model.circuits.pixel_kernels`), drawn from the weights alone (no unit
    runs for them) and cached like any tile, under a key of the model and preprocessing."""
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
