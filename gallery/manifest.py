"""The whole site as plain data: the only thing templates see.

Paths are relative to the site root; each page adds its own ``root`` prefix, so the
site opens from ``file://`` and from any static host.
"""

from __future__ import annotations

import platform
from importlib import metadata

import keras

from . import graph
from .slugs import slug

SCHEMA = 1


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "keras backend": keras.backend.backend()}
    for package in ("cnn-gallery", "keras", "tensorflow", "jax", "torch", "numpy", "pillow", "jinja2", "matplotlib"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def layer_table(model: keras.Model) -> list[dict]:
    """One row per layer (nested models flattened): name, type, output shape, parameters."""
    rows = []
    conv = set(graph.conv_layers(model))

    def walk(container, prefix):
        for layer in container.layers:
            name = prefix + layer.name
            if isinstance(layer, keras.Model):
                walk(layer, name + "/")
                continue
            try:
                shape = tuple(layer.output.shape)
            except (AttributeError, ValueError):
                shape = None
            rows.append({
                "name": name,
                "type": type(layer).__name__,
                "shape": "×".join("?" if d is None else str(d) for d in shape[1:]) if shape else "",
                "params": int(layer.count_params()) if layer.built else 0,
                "conv": name in conv,
            })

    walk(model, "")
    return rows


def model_entry(model, *, title: str, source: str, fingerprint: str, preprocess: str,
                classes: int | None, labels_source: str | None, cam_note: str | None) -> dict:
    return {
        "name": title,
        "slug": slug(title),
        "source": source,
        "keras_name": model.name,
        "fingerprint": fingerprint,
        "params": int(model.count_params()),
        "input_shape": "×".join("?" if d is None else str(d) for d in tuple(model.inputs[0].shape)[1:]),
        "preprocess": preprocess,
        "classes": classes,
        "labels_source": labels_source,
        "cam_note": cam_note,
    }


def build(*, model_info: dict, table: list[dict], filter_tiles: dict, channels: dict[str, int],
          photos: list, class_names: list[str] | None, cam_method: str, settings: dict,
          command: str) -> tuple[dict, dict[str, str]]:
    """``(manifest, files)`` where ``files`` maps each site path to the cache key it holds."""
    base = model_info["slug"]
    files: dict[str, str] = {}
    layers = []
    for name, tiles in filter_tiles.items():
        lslug = slug(name)
        folder = f"{base}/layers/{lslug}"
        filters = []
        for tile in tiles:
            image = f"{folder}/{tile.index}.png"
            files[image] = tile.key
            filters.append({"index": tile.index, "activation": round(tile.activation, 4),
                            "image": image, "page": f"{folder}/{tile.index}.html"})
        layers.append({"name": name, "slug": lslug, "channels": channels[name], "page": f"{folder}/index.html",
                       "filters": filters})

    photo_entries = []
    for p in photos:
        pslug = slug(p.name)
        folder = f"{base}/photos/{pslug}"
        image = f"{folder}/photo.jpg"
        files[image] = p.image_key
        features = []
        for layer_name, (key, layout) in p.features.items():
            sheet = f"{folder}/features-{slug(layer_name)}.png"
            files[sheet] = key
            layer_dir = f"{base}/layers/{slug(layer_name)}/"
            features.append({"layer": layer_name, "layer_dir": layer_dir, "layer_page": layer_dir + "index.html",
                             "image": sheet, **{k: layout[k] for k in ("cols", "rows", "cell", "channels")},
                             "peak": layout.get("peak", [])})
        predictions = [{"index": pr["index"], "probability": pr["probability"],
                        "name": class_names[pr["index"]] if class_names else f"class {pr['index']}"}
                       for pr in p.predictions]
        cams = []
        for layer_name, entries in p.cams.items():
            for cls, key in entries:
                path = f"{folder}/cam-{slug(layer_name)}-{cls}.jpg"
                files[path] = key
                cams.append({"layer": layer_name, "class": cls, "image": path, "method": cam_method,
                             "name": class_names[cls] if class_names else f"class {cls}"})
        photo_entries.append({"name": p.name, "slug": pslug, "image": image, "width": p.size[0],
                              "height": p.size[1], "page": f"{base}/photos/{pslug}.html",
                              "predictions": predictions, "cams": cams, "features": features})

    manifest = {
        "schema": SCHEMA,
        "model": model_info,
        "page": f"{base}/index.html",
        "layers": layers,
        "table": table,
        "photos": photo_entries,
        "settings": settings,
        "versions": versions(),
        "command": command,
    }
    return manifest, files
