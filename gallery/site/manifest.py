"""The whole site as records (:mod:`.records`), which templates see as plain data. This
module makes the model's index and each layer's and filter's page data; :mod:`.photo_pages`
the photos'.

Paths are relative to the site root; each page adds its own ``root`` prefix, so the
site opens from ``file://`` and from any static host.
"""

from __future__ import annotations

from .. import attribution
from . import photo_pages
from .records import (Filter, Frames, Input, Kernels, Layer, Manifest, ModelInfo, Snapshot, TableRow, TopPhoto,
                      Trajectory, Transparency, Variant, VariantImage, parse)
from .slugs import assign
from .urls import PENDING, Urls

MANIFEST_SCHEMA = 6  # 6: CAMs carry deletion and insertion curves, photos their randomization checks; 5: CAMs carry their faithfulness; 4: pending filters and photos, and the build status; 3: filters carry variant images


def build(*, model_info: dict, table: list[dict], filter_tiles: dict, channels: dict[str, int],
          photos, class_names: list[str] | None, settings: dict, command: str,
          circuits: dict | None = None, cam_sources: dict | None = None,
          status: dict | None = None, collages: dict[str, str] | None = None,
          kernels: dict[str, dict] | None = None, activations: dict[str, str] | None = None,
          linear: tuple[str, ...] = (), versions: dict[str, str] | None = None,
          curve_points: int = attribution.POINTS) -> tuple[Manifest, dict[str, str]]:
    """``(manifest, files)`` where ``files`` maps each site path to the cache key it holds.

    ``photos`` is a :class:`~gallery.orchestrate.units.photos.PhotoResults`. Every photo is in the
    ``pool`` (filters' top photos point into it by index); paged ones are also in
    ``photos``. A pool photo's image is published only if a page or a top list shows it.
    Filters and photos still pending show :data:`PENDING` and publish no file yet;
    ``status`` (``None`` once the build is done) says how far the build has come.
    ``model_info``, ``table`` and ``versions`` are plain data gathered before the site
    (:mod:`gallery.orchestrate.facts`): nothing here reads the model; they enter the site's
    types here, checked as a manifest read from disk is.
    """
    files: dict[str, str] = {}
    tops = _tops(filter_tiles, photos)
    photo_slugs = assign(p.name for p in photos.photos)
    urls = Urls(model_info["slug"],
                assign([*filter_tiles, *(cam["layer"] for p in photos.photos for cam in p.cams if cam["layer"]),
                        *(layer for p in photos.photos for layer in p.features)]).__getitem__,
                {(name, t.index): t for name, tiles in filter_tiles.items() for t in tiles})
    pool = photo_pages.pool(urls, photos.photos, {t.photo for top in tops.values() for t in top},
                            photo_slugs, files)
    circuits, collages, kernels, activations = circuits or {}, collages or {}, kernels or {}, activations or {}
    layers = [_layer(name, tiles, urls, files, tops, channels=channels[name], circuit=circuits.get(name, (None, {})),
                     collage=collages.get(name), kernels=kernels.get(name), activation=activations.get(name),
                     linear=name in linear, map_shape=photos.examples.maps.get(name))
              for name, tiles in filter_tiles.items()]
    curve_x = attribution.fractions(curve_points).tolist()
    photo_entries = [photo_pages.page(p, entry, photo_slugs[p.name], urls, files, class_names=class_names,
                                      curve_x=curve_x, cam_sources=cam_sources or {})
                     for p, entry in zip(photos.photos, pool) if p.paged]
    manifest = Manifest(
        schema=MANIFEST_SCHEMA,
        model=parse(ModelInfo, model_info, "model"),
        page=f"{urls.base}/index.html",
        layers=layers,
        table=parse(list[TableRow], table, "table"),
        photos=photo_entries,
        pool=pool,
        sanity=photo_pages.sanity_summary(photo_entries),
        settings=settings,
        versions=versions or {},
        command=command,
        status=status,
    )
    return manifest, files


def _tops(filter_tiles: dict, photos) -> dict[tuple[str, int], list[TopPhoto]]:
    """Each filter's top photos, strongest first, each naming its photo by its place in the pool."""
    pool_index = {p.position: i for i, p in enumerate(photos.photos)}
    return {(name, tile.index): [TopPhoto(**{**t, "photo": pool_index[t["photo"]]})
                                 for t in photos.examples.top(name, tile.index)]
            for name, tiles in filter_tiles.items() for tile in tiles}


def _layer(name: str, tiles: list, urls: Urls, files: dict, tops: dict, *, channels: int, circuit: tuple,
           collage: str | None, kernels: dict | None, activation: str | None, linear: bool,
           map_shape: list[int] | None) -> Layer:
    """A layer's page data: its filters, and the layer's collage and kernel sheet where built.
    ``circuit`` is ``(source, inputs)``: the layer feeding it, and each filter's strongest
    inputs there; ``map_shape`` is the layer's feature map's (h, w) on the photos."""
    folder = urls.layer(name)
    source, inputs = circuit
    filters = [_filter(tile, folder, files, tops[(name, tile.index)],
                       [Input(index=i, strength=w, **urls.link(source, i)) for i, w in inputs.get(tile.index, [])])
               for tile in tiles]
    return Layer(name=name, slug=urls.slug(name), channels=channels, page=f"{folder}/index.html",
                 collage=_collage(files, folder, f"{urls.base}-{urls.slug(name)}", collage),
                 kernels=_kernels(files, folder, kernels), activation=activation, linear=linear,
                 dir=f"{folder}/", upstream=source, filters=filters,
                 dead=sum(f.dead for f in filters), sparse=sum(f.sparse for f in filters),
                 pending=sum(f.pending for f in filters), map=map_shape)


def _filter(tile, folder: str, files: dict, best: list[TopPhoto], inputs: list[Input]) -> Filter:
    """A filter's entry: its image and thumbnail, top photos, inputs, and what else the build drew of it."""
    image, thumb = f"{folder}/{tile.index}.png", f"{folder}/{tile.index}.thumb.jpg"
    if tile.pending:
        image = thumb = PENDING
    else:
        files[image], files[thumb] = tile.key, tile.thumb
    return Filter(
        index=tile.index, pending=tile.pending,
        activation=None if tile.pending else round(tile.activation, 4),
        peak=None if tile.peak is None else round(tile.peak, 4),
        **liveness(tile, best),
        image=image, thumb=thumb, page=f"{folder}/{tile.index}.html",
        inputs=inputs,
        top=best,
        variants=[_variant(files, folder, tile.index, variant, images) for variant, images in tile.variants.items()],
        trajectory=_trajectory(files, folder, tile) if tile.trajectory and not tile.pending else None,
        transparency=_transparency(files, folder, tile),
        bands=_bands(files, folder, tile),
    )


def _collage(files: dict, folder: str, stem: str, key: str | None) -> str | None:
    """The layer's filters in one image, where the build made one; named ``stem`` (model and
    layer), since a download leaves the site's folders behind."""
    if not key:
        return None
    path = f"{folder}/{stem}-filters.jpg"
    files[path] = key
    return path


def _kernels(files: dict, folder: str, sheet: dict | None) -> Kernels | None:
    """A first layer's kernels drawn as images, where the build drew them."""
    if not sheet:
        return None
    files[f"{folder}/kernels.png"] = sheet["key"]
    return Kernels(image=f"{folder}/kernels.png", **{k: v for k, v in sheet.items() if k != "key"})


def liveness(tile, top: list[TopPhoto]) -> dict:
    """Whether a filter is dead, sparse or rare, from the peaks a build knows.

    *dead*: nothing the build showed it makes it fire: the peak (its strongest unit, after
    the layer's activation) of its own image and of every sample photo is at most 0. Its
    top photos are the strongest of all, so the first of them stands for every photo.
    A filter whose image's mean pre-activation is below zero may still fire in places, as
    many deep filters do: that is *sparse*, not dead. ``fires_on`` counts the photos it
    fires on where that is known exactly: when fewer of its top photos fire than are
    listed, no other photo does (``None`` otherwise, for a dead filter, or while the
    filter is pending).
    """
    if tile.pending:
        return {"dead": False, "sparse": False, "fires_on": None}
    firing = sum(t.peak > 0 for t in top)
    dead = tile.peak is not None and tile.peak <= 0 and firing == 0
    return {"dead": dead, "sparse": not dead and tile.peak is not None and tile.activation <= 0,
            "fires_on": firing if firing < len(top) and not dead else None}


def _variant(files: dict, folder: str, index: int, variant: str, images: list) -> Variant:
    entries = []
    for copy, found in enumerate(images):
        if found is None:
            entries.append(VariantImage(image=PENDING, activation=None, pending=True))
            continue
        path = f"{folder}/{index}.{variant}-{copy}.png"
        files[path] = found.key
        entries.append(VariantImage(image=path, activation=round(found.activation, 4), pending=False))
    return Variant(name=variant, images=entries)


def _trajectory(files: dict, folder: str, tile) -> Trajectory:
    """The animation of a filter image's optimization, its frames in a row, and per frame
    the step, the canvas the network saw and what the image reached then."""
    found = tile.trajectory
    animation, frames = f"{folder}/{tile.index}.trajectory.webp", f"{folder}/{tile.index}.trajectory.jpg"
    files[animation], files[frames] = found.key, found.frames
    return Trajectory(image=animation, frames=Frames(image=frames, cols=len(found.snapshots), rows=1),
                      snapshots=[Snapshot(**{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()})
                                 for s in found.snapshots])


def _bands(files: dict, folder: str, tile) -> str | None:
    """Every channel of the tile in grey, side by side, where the tile shows only some
    (gallery.channels.strip); ``None`` otherwise, which the file leaves out, so an RGB
    filter's entry is as it was."""
    if tile.bands is None or tile.pending:
        return None
    path = f"{folder}/{tile.index}.channels.png"
    files[path] = tile.bands
    return path


def _transparency(files: dict, folder: str, tile) -> Transparency | None:
    """The tile with MACO's transparency map for alpha, where the build made one."""
    if tile.transparency is None or tile.pending:
        return None
    path = f"{folder}/{tile.index}.transparency.png"
    files[path] = tile.transparency.key
    return Transparency(image=path, percentile=round(tile.transparency.percentile))
