"""The site's data as types: the manifest, its model, layers, filters and photos.

:mod:`.manifest` and :mod:`.photo_pages` build these records; :func:`plain` turns them into
the plain data that ``manifest.json`` holds and templates see, key for key in the order
the fields are declared here (that order *is* the file's); :func:`read` parses a
``manifest.json`` back into them, checking each value, so a manifest on disk enters the
site in the same types a build makes. A field added after the first manifests has a
default: what a manifest written before it reads as.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import GalleryError

record = dataclass(frozen=True, kw_only=True)  # kw_only: fields keep the file's order, defaults or not


def key(name: str):
    """A field whose key in the file is not a Python name (``class``)."""
    return field(metadata={"key": name})


def omitted(default=None):
    """A field the file leaves out while it is ``None``, so a manifest without it reads as
    it did before the field existed."""
    return field(default=default, metadata={"omit": True})


# model ---------------------------------------------------------------------------------

@record
class Channels:
    """A model's input channels where they are not plain RGB (gallery.channels)."""

    count: int
    rgb: list[int] | None
    about: str
    photo_note: str
    fill_note: str


@record
class ModelInfo:
    """What the index and the model page say of the model (gallery.orchestrate.facts.model_entry)."""

    name: str
    slug: str
    identity: str | None = None
    source: str
    keras_name: str
    fingerprint: str
    params: int
    input_shape: str
    output_shape: str
    preprocess: str
    classes: int | None
    labels_source: str | None
    cam_note: str | None
    channels: Channels | None = omitted()
    tile_side: int | None = omitted()


@record
class TableRow:
    """One row of the model page's layer table (gallery.model.table)."""

    name: str
    type: str
    shape: str
    params: int
    conv: bool
    minor: bool
    then: list[str]


# filters -------------------------------------------------------------------------------

@record
class Input:
    """A filter of the layer below that feeds this one strongly; ``page`` and ``thumb``
    where the build renders it."""

    index: int
    strength: float
    page: str | None
    thumb: str | None


@record
class TopPhoto:
    """One of a filter's top photos: its place in the pool, its peak and where (fractions of h, w)."""

    photo: int
    peak: float
    at: list[float]


@record
class VariantImage:
    image: str
    activation: float | None
    pending: bool


@record
class Variant:
    name: str
    images: list[VariantImage]


@record
class Frames:
    image: str
    cols: int
    rows: int


@record
class Snapshot:
    step: int
    canvas: int
    activation: float
    peak: float


@record
class Trajectory:
    image: str
    frames: Frames
    snapshots: list[Snapshot]


@record
class Transparency:
    image: str
    percentile: int


@record
class Filter:
    index: int
    pending: bool
    activation: float | None
    peak: float | None
    dead: bool
    sparse: bool = False
    fires_on: int | None = None
    image: str
    thumb: str
    page: str
    inputs: list[Input]
    top: list[TopPhoto]
    variants: list[Variant] = ()
    trajectory: Trajectory | None = None
    transparency: Transparency | None = None
    bands: str | None = omitted()


@record
class Kernels:
    """A first layer's kernels drawn as one image."""

    image: str
    cols: int
    rows: int
    scale: float
    shape: str


@record
class Layer:
    name: str
    slug: str
    channels: int
    page: str
    collage: str | None = None
    kernels: Kernels | None = None
    activation: str | None = None
    linear: bool = False
    dir: str
    upstream: str | None
    filters: list[Filter]
    dead: int
    sparse: int = 0
    pending: int
    map: list[int] | None


# photos --------------------------------------------------------------------------------

@record
class PoolPhoto:
    """Every photo is in the pool; ``image`` and ``page`` are ``None`` where nothing shows it."""

    name: str
    width: int
    height: int
    image: str | None
    page: str | None


@record
class Caricature:
    image: str
    cosine: float


@record
class Feature:
    """A photo's feature maps at one layer, as one sheet."""

    layer: str
    layer_dir: str
    layer_page: str
    image: str
    cols: int
    rows: int
    cell: int
    channels: int
    map: list[int]
    peak: list[float]
    caricature: Caricature | None = None


@record
class Curve:
    y: list[float]
    auc: float


@record
class RandomCurves:
    deletion: Curve
    insertion: Curve


@record
class Faithfulness:
    """See :func:`gallery.site.photo_pages._faithfulness`; the curves came with schema 6."""

    p: float
    top: float
    bottom: float
    top_share: float | None
    bottom_share: float | None
    x: list[float] = ()
    deletion: Curve | None = None
    insertion: Curve | None = None
    random: RandomCurves | None = None


@record
class Cam:
    layer: str | None
    method: str
    class_: int = key("class")
    image: str
    name: str
    faithfulness: Faithfulness | None = None


@record
class Prediction:
    index: int
    probability: float
    name: str


@record
class ChannelShare:
    index: int
    share: float
    page: str | None
    thumb: str | None


@record
class Contribution:
    layer: str
    source: str | None
    channels: list[ChannelShare]


@record
class Check:
    """A photo's randomization check for one method (and layer)."""

    layer: str | None
    method: str
    image: str
    class_: int = key("class")
    name: str
    layers: list[str]
    spearman: list[float]
    ssim: list[float]
    fails: bool


@record
class Photo:
    name: str
    slug: str
    image: str | None
    width: int
    height: int
    page: str
    features: list[Feature]
    cams: list[Cam]
    pending: bool = False
    predictions: list[Prediction]
    contributions: list[Contribution]
    sanity: list[Check] = ()


@record
class SanitySummary:
    """Per method (and layer), the randomization check over every photo that has one."""

    layer: str | None
    method: str
    photos: int
    layers: list[str]
    failed: int
    spearman: list[float]
    ssim: list[float]
    fails: bool


@record
class Manifest:
    """A model's site: what its ``manifest.json`` holds. ``status`` is the build's
    (gallery.orchestrate.progress), ``None`` once the build is done."""

    schema: int
    model: ModelInfo
    page: str
    layers: list[Layer]
    table: list[TableRow]
    photos: list[Photo]
    pool: list[PoolPhoto]
    sanity: list[SanitySummary] = ()
    settings: dict[str, Any]
    versions: dict[str, str]
    command: str
    status: dict[str, Any] | None = None


# plain data ------------------------------------------------------------------------------

def plain(value):
    """``value`` as plain data: records as dicts in their fields' order, sequences as lists."""
    if value is None or type(value) in _SCALARS:  # most values: tested first
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        found = ((key, getattr(value, name), omit) for name, key, omit in _fields(type(value)))
        return {key: plain(v) for key, v, omit in found if not (omit and v is None)}
    return value


_SCALARS = {str, int, float, bool}


@functools.cache
def _fields(kind) -> tuple[tuple[str, str, bool], ...]:
    """``(name, key in the file, left out while None)`` of each field, in order: looked up
    once per record type, since a large site's manifest holds some hundred thousand records."""
    return tuple((f.name, f.metadata.get("key", f.name), bool(f.metadata.get("omit"))) for f in dataclasses.fields(kind))


class ManifestError(GalleryError, ValueError):
    """A manifest that does not have the shape the site reads."""


def read(data, where: str = "manifest") -> Manifest:
    """``data`` (a parsed ``manifest.json``) as a :class:`Manifest`; :class:`ManifestError`
    in one line, naming the value and what was expected, when it is not one."""
    return parse(Manifest, data, where)


def parse(kind, value, where: str):
    """``value`` as ``kind`` (a record, or a type as the fields here spell them)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return None if value is None else parse(options[0], value, where)
    if dataclasses.is_dataclass(kind):
        return _record(kind, value, where)
    if origin is list:
        _expect(isinstance(value, list), "a list", value, where)
        return [parse(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _expect(isinstance(value, dict), "an object", value, where)
        return {k: parse(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if kind is Any:
        return value
    if kind is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), "a number", value, where)
    elif kind is int:
        _expect(isinstance(value, int) and not isinstance(value, bool), "a whole number", value, where)
    else:
        _expect(isinstance(value, kind), {str: "a string", bool: "true or false"}[kind], value, where)
    return value


def _record(kind, value, where: str):
    _expect(isinstance(value, dict), f"an object ({kind.__name__})", value, where)
    found = {}
    for name, key, hint, required in _schema(kind):
        if key in value:
            found[name] = parse(hint, value[key], f"{where}.{key}")
        elif required:
            raise ManifestError(f"{where}: expected a key {key!r}, got an object with keys "
                                f"{', '.join(map(repr, value)) or 'none'}")
    return kind(**found)


@functools.cache
def _schema(kind) -> tuple:
    """``(name, key in the file, type, required)`` of each field of a record type."""
    hints = typing.get_type_hints(kind)
    return tuple((f.name, f.metadata.get("key", f.name), hints[f.name],
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(kind))


def _expect(ok: bool, what: str, value, where: str) -> None:
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ManifestError(f"{where}: expected {what}, got {shown}")
