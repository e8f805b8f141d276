"""The whole site as plain data: the only thing templates see.

Paths are relative to the site root; each page adds its own ``root`` prefix, so the
site opens from ``file://`` and from any static host.
"""

from __future__ import annotations

from .. import attribution
from .slugs import assign

MANIFEST_SCHEMA = 6  # 6: CAMs carry deletion and insertion curves, photos their randomization checks; 5: CAMs carry their faithfulness; 4: pending filters and photos, and the build status; 3: filters carry variant images


def _faithfulness(cam: dict, baseline: dict | None, x: list[float]) -> dict:
    """A map's faithfulness (gallery.photos.faithfulness): the class probability with the
    whole photo (``p``), and with only the map's top or bottom pixels kept, each also as a
    share of ``p`` (``None`` where ``p`` is 0: there is nothing to keep a share of); its
    deletion and insertion curves at the shares ``x``, with their areas, and the same of
    the random-order baseline of its photo and class (``None`` when not known)."""
    p = cam["p"]
    return {"p": p, "top": cam["top"], "bottom": cam["bottom"],
            "top_share": cam["top"] / p if p > 0 else None, "bottom_share": cam["bottom"] / p if p > 0 else None,
            "x": x, **_curves(cam, x), "random": _curves(baseline, x) if baseline else None}


def _curves(found: dict, x: list[float]) -> dict:
    return {kind: {"y": found[kind], "auc": attribution.area(x, found[kind])} for kind in ("deletion", "insertion")}


def sanity_summary(photos: list[dict]) -> list[dict]:
    """Per method (and layer), the randomization check over every photo that has one: how
    many photos' maps failed it, and the mean rank correlation and SSIM at each level."""
    groups: dict = {}
    for photo in photos:
        for check in photo["sanity"]:
            groups.setdefault((check["layer"], check["method"]), []).append(check)
    summary = []
    for (layer, method), checks in groups.items():
        levels = len(checks[0]["spearman"])
        mean = {k: [sum(c[k][i] for c in checks) / len(checks) for i in range(levels)] for k in ("spearman", "ssim")}
        summary.append({"layer": layer, "method": method, "photos": len(checks), "layers": checks[0]["layers"],
                        "failed": sum(c["fails"] for c in checks), **mean, "fails": attribution.fails(mean)})
    return summary


PENDING = "static/pending.svg"  # what a filter or photo shows until the build settles it


def build(*, model_info: dict, table: list[dict], filter_tiles: dict, channels: dict[str, int],
          photos, class_names: list[str] | None, settings: dict, command: str,
          circuits: dict | None = None, cam_sources: dict | None = None,
          status: dict | None = None, collages: dict[str, str] | None = None,
          kernels: dict[str, dict] | None = None, activations: dict[str, str] | None = None,
          linear: tuple[str, ...] = (), versions: dict[str, str] | None = None,
          curve_points: int = attribution.POINTS) -> tuple[dict, dict[str, str]]:
    """``(manifest, files)`` where ``files`` maps each site path to the cache key it holds.

    ``photos`` is a :class:`~gallery.orchestrate.state.PhotoResults`. Every photo is in the
    ``pool`` (filters' top photos point into it by index); paged ones are also in
    ``photos``. A pool photo's image is published only if a page or a top list shows it.
    Filters and photos still pending show :data:`PENDING` and publish no file yet;
    ``status`` (``None`` once the build is done) says how far the build has come.
    ``model_info``, ``table`` and ``versions`` are plain data gathered before the site
    (:mod:`gallery.orchestrate.facts`): nothing here reads the model.
    """
    base = model_info["slug"]
    files: dict[str, str] = {}
    curve_x = attribution.fractions(curve_points).tolist()
    pool_index = {p.position: i for i, p in enumerate(photos.photos)}

    def top(layer: str, index: int) -> list[dict]:
        return [{**t, "photo": pool_index[t["photo"]]} for t in photos.examples.top(layer, index)]

    ranked = {t["photo"] for name, tiles in filter_tiles.items() for tile in tiles for t in top(name, tile.index)}
    photo_slugs = assign(p.name for p in photos.photos)
    slug = assign([*filter_tiles, *(cam["layer"] for p in photos.photos for cam in p.cams if cam["layer"]),
                   *(layer for p in photos.photos for layer in p.features)]).__getitem__
    pool = _pool(base, photos.photos, ranked, photo_slugs)
    for entry, tiles in zip(pool, photos.photos):
        if entry["image"] and not tiles.pending:
            files[entry["image"]] = tiles.image_key
    circuits = circuits or {}
    tiles_of = {(name, t.index): t for name, tiles in filter_tiles.items() for t in tiles}

    def link(layer: str | None, index: int) -> dict:
        """A filter's page and thumbnail, when this build renders it."""
        tile = tiles_of.get((layer, index))
        if tile is None:
            return {"page": None, "thumb": None}
        stem = f"{base}/layers/{slug(layer)}/{index}"
        return {"page": f"{stem}.html", "thumb": PENDING if tile.pending else f"{stem}.thumb.jpg"}

    def name_of(index: int) -> str:
        return class_names[index] if class_names else f"class {index}"

    layers = []
    for name, tiles in filter_tiles.items():
        folder = f"{base}/layers/{slug(name)}"
        source, inputs = circuits.get(name, (None, {}))
        filters = []
        for tile in tiles:
            image, thumb = f"{folder}/{tile.index}.png", f"{folder}/{tile.index}.thumb.jpg"
            if tile.pending:
                image = thumb = PENDING
            else:
                files[image], files[thumb] = tile.key, tile.thumb
            best = top(name, tile.index)
            filters.append({
                "index": tile.index, "pending": tile.pending,
                "activation": None if tile.pending else round(tile.activation, 4),
                "peak": None if tile.peak is None else round(tile.peak, 4),
                **liveness(tile, best),
                "image": image, "thumb": thumb, "page": f"{folder}/{tile.index}.html",
                "inputs": [{"index": i, "strength": w, **link(source, i)}
                           for i, w in inputs.get(tile.index, [])],
                "top": best,
                "variants": [_variant(files, folder, tile.index, variant, images)
                             for variant, images in tile.variants.items()],
                "trajectory": _trajectory(files, folder, tile) if tile.trajectory and not tile.pending else None,
                "transparency": _transparency(files, folder, tile),
                **_bands(files, folder, tile),
            })
        collage = None
        if (collages or {}).get(name):
            # Named for the model and layer, since a download leaves the site's folders behind.
            collage = f"{folder}/{base}-{slug(name)}-filters.jpg"
            files[collage] = collages[name]
        sheet = (kernels or {}).get(name)
        if sheet:
            files[f"{folder}/kernels.png"] = sheet["key"]
            sheet = {"image": f"{folder}/kernels.png", **{k: v for k, v in sheet.items() if k != "key"}}
        layers.append({"name": name, "slug": slug(name), "channels": channels[name], "page": f"{folder}/index.html",
                       "collage": collage, "kernels": sheet, "activation": (activations or {}).get(name),
                       "linear": name in linear,
                       "dir": f"{folder}/", "upstream": source, "filters": filters,
                       "dead": sum(f["dead"] for f in filters), "sparse": sum(f["sparse"] for f in filters),
                       "pending": sum(f["pending"] for f in filters),
                       "map": photos.examples.maps.get(name)})

    photo_entries = []
    for p, entry in zip(photos.photos, pool):
        if not p.paged:
            continue
        pslug = photo_slugs[p.name]
        folder = f"{base}/photos/{pslug}"
        features = []
        for layer_name, (key, layout) in p.features.items():
            sheet = f"{folder}/features-{slug(layer_name)}.png"
            files[sheet] = key
            layer_dir = f"{base}/layers/{slug(layer_name)}/"
            features.append({"layer": layer_name, "layer_dir": layer_dir, "layer_page": layer_dir + "index.html",
                             "image": sheet, **{k: layout[k] for k in ("cols", "rows", "cell", "channels", "map")},
                             "peak": layout["peak"],
                             "caricature": _caricature(files, folder, slug(layer_name), p.caricatures.get(layer_name))})
        cams = []
        baselines = {b["class"]: b for b in p.baselines}
        for cam in p.cams:
            path = (f"{folder}/cam-{slug(cam['layer'])}-{cam['method']}-{cam['class']}.jpg" if cam["layer"]
                    else f"{folder}/pixels-{cam['method']}-{cam['class']}.jpg")  # layer-free: saliency, SmoothGrad
            files[path] = cam["key"]
            cams.append({"layer": cam["layer"], "method": cam["method"], "class": cam["class"], "image": path,
                         "name": name_of(cam["class"]),
                         "faithfulness": _faithfulness(cam, baselines.get(cam["class"]), curve_x)})
        checks = []
        for check in p.sanity:
            where = f"cam-{slug(check['layer'])}" if check["layer"] else "pixels"
            path = f"{folder}/randomized-{where}-{check['method']}.jpg"
            files[path] = check["key"]
            checks.append({"layer": check["layer"], "method": check["method"], "image": path,
                           "class": check["class"], "name": name_of(check["class"]), "layers": check["layers"],
                           "spearman": check["spearman"], "ssim": check["ssim"],
                           "fails": attribution.fails(check)})
        contributions = [
            {"layer": layer, "source": (cam_sources or {}).get(layer),
             "channels": [{"index": k, "share": v, **link((cam_sources or {}).get(layer), k)}
                          for k, v in shares]}
            for layer, shares in p.contributions.items()
        ]
        photo_entries.append({
            "name": p.name, "slug": pslug, "image": entry["image"], "width": p.size[0], "height": p.size[1],
            "page": f"{base}/photos/{pslug}.html", "features": features, "cams": cams, "pending": p.pending,
            "predictions": [{**pr, "name": name_of(pr["index"])} for pr in p.predictions],
            "contributions": contributions, "sanity": checks,
        })

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "model": model_info,
        "page": f"{base}/index.html",
        "layers": layers,
        "table": table,
        "photos": photo_entries,
        "pool": pool,
        "sanity": sanity_summary(photo_entries),
        "settings": settings,
        "versions": versions or {},
        "command": command,
        "status": status,
    }
    return manifest, files


def liveness(tile, top: list[dict]) -> dict:
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
    firing = sum(t["peak"] > 0 for t in top)
    dead = tile.peak is not None and tile.peak <= 0 and firing == 0
    return {"dead": dead, "sparse": not dead and tile.peak is not None and tile.activation <= 0,
            "fires_on": firing if firing < len(top) and not dead else None}


def _variant(files: dict, folder: str, index: int, variant: str, images: list) -> dict:
    entries = []
    for copy, found in enumerate(images):
        if found is None:
            entries.append({"image": PENDING, "activation": None, "pending": True})
            continue
        path = f"{folder}/{index}.{variant}-{copy}.png"
        files[path] = found.key
        entries.append({"image": path, "activation": round(found.activation, 4), "pending": False})
    return {"name": variant, "images": entries}


def _trajectory(files: dict, folder: str, tile) -> dict:
    """The animation of a filter image's optimization, its frames in a row, and per frame
    the step, the canvas the network saw and what the image reached then."""
    found = tile.trajectory
    animation, frames = f"{folder}/{tile.index}.trajectory.webp", f"{folder}/{tile.index}.trajectory.jpg"
    files[animation], files[frames] = found.key, found.frames
    return {"image": animation, "frames": {"image": frames, "cols": len(found.snapshots), "rows": 1},
            "snapshots": [{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}
                          for s in found.snapshots]}


def _bands(files: dict, folder: str, tile) -> dict:
    """Every channel of the tile in grey, side by side, where the tile shows only some
    (gallery.channels.strip); nothing otherwise, so an RGB filter's entry is as it was."""
    if tile.bands is None or tile.pending:
        return {}
    path = f"{folder}/{tile.index}.channels.png"
    files[path] = tile.bands
    return {"bands": path}


def _transparency(files: dict, folder: str, tile) -> dict | None:
    """The tile with MACO's transparency map for alpha, where the build made one."""
    if tile.transparency is None or tile.pending:
        return None
    path = f"{folder}/{tile.index}.transparency.png"
    files[path] = tile.transparency.key
    return {"image": path, "percentile": round(tile.transparency.percentile)}


def _caricature(files: dict, folder: str, layer_slug: str, found: dict | None) -> dict | None:
    """A photo's caricature at one layer (gallery.render.caricature), where the build drew one."""
    if found is None:
        return None
    path = f"{folder}/caricature-{layer_slug}.png"
    files[path] = found["key"]
    return {"image": path, "cosine": round(found["cosine"], 4)}


def _pool(base: str, tiles: list, wanted: set[int], slugs: dict[str, str]) -> list[dict]:
    """Every photo as ``{name, image, width, height, page}``; ``image`` and ``page`` are
    ``None`` where nothing shows the photo, and ``image`` is :data:`PENDING` for a paged
    photo not analysed yet."""
    pool = []
    for i, t in enumerate(tiles):
        pslug = slugs[t.name]
        published = t.paged or i in wanted
        folder = f"{base}/photos/{pslug}" if t.paged else f"{base}/photos/pool"
        image = (f"{folder}/photo.jpg" if t.paged else f"{folder}/{pslug}.jpg") if published else None
        pool.append({"name": t.name, "width": t.size[0], "height": t.size[1],
                     "image": PENDING if t.pending and t.paged else image,
                     "page": f"{base}/photos/{pslug}.html" if t.paged else None})
    return pool
