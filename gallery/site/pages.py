"""Writes the static site from a manifest: tiles from the cache, pages from Jinja2.

The only module that imports Jinja2. Pages use relative links only, so the site opens
from ``file://`` and can be copied to any static host. Files whose bytes have not
changed are left untouched, so rebuilds and syncs to a host stay cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..errors import GalleryError
from .folder import SiteFolder

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def environment(templates: Path = TEMPLATES) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: f"{100 * v:.1f}%"
    env.filters["num"] = lambda v: f"{v:,}"
    return env


def _root(page: str) -> str:
    return "../" * page.count("/")


def model_cards(manifests: list[dict]) -> list[dict]:
    return [
        {"model": m["model"], "page": m["page"], "layers": len(m["layers"]),
         "filters": sum(len(layer["filters"]) for layer in m["layers"]), "photos": len(m["photos"]),
         "thumbs": [layer["filters"][0]["thumb"] for layer in m["layers"] if layer["filters"]][-4:]}
        for m in manifests
    ]


def search_index(manifests: list[dict]) -> dict:
    """What the client-side search looks through: models, layers (with their filters),
    photos and the classes predicted on them. Plain data; paths are site-relative."""
    entries, layers = [], []
    for m in manifests:
        model = m["model"]["name"]
        entries.append({"k": "model", "l": model, "u": m["page"], "d": f"{len(m['layers'])} layers"})
        for layer in m["layers"]:
            entries.append({"k": "layer", "l": layer["name"], "u": layer["page"], "d": model})
            layers.append({"n": layer["name"], "m": model, "u": layer["dir"],
                           "f": [f["index"] for f in layer["filters"]]})
        for photo in m["photos"]:
            entries.append({"k": "photo", "l": photo["name"], "u": photo["page"], "d": model})
            for pred in photo["predictions"]:
                entries.append({"k": "class", "l": pred["name"], "u": photo["page"],
                                "d": f"{photo['name']} · {100 * pred['probability']:.1f}% · {model}"})
    return {"entries": entries, "layers": layers}


def search_script(index: dict) -> bytes:
    # ASCII-only JSON escapes U+2028/9 and every non-ASCII name; "<\/" keeps it inert even inline.
    text = json.dumps(index, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    return f"window.GALLERY_SEARCH = {text};\n".encode("ascii")


FEATURE_MAPS_SHOWN = 12  # a filter page shows its feature maps on the photos it likes best


def crop_style(photo: dict, at: list[float], map_size: list[int]) -> str:
    """CSS that shows the part of a photo around a unit, from the published photo itself.

    The crop is square, a fraction of the photo's short side that grows as the map
    shrinks (deeper layers see more of the photo).
    """
    w, h = photo["width"], photo["height"]
    side = min(max(4.0 / max(map_size), 0.15), 0.6) * min(w, h)
    fw, fh = min(side / w, 1.0), min(side / h, 1.0)
    left = min(max(at[1] - fw / 2, 0.0), 1.0 - fw)
    top = min(max(at[0] - fh / 2, 0.0), 1.0 - fh)
    px = 0.0 if fw >= 1 else 100 * left / (1 - fw)
    py = 0.0 if fh >= 1 else 100 * top / (1 - fh)
    return (f"background-size:{100 / fw:.2f}% {100 / fh:.2f}%;"
            f"background-position:{px:.2f}% {py:.2f}%")


def pages(manifest: dict, manifests: list[dict]) -> list[tuple[str, str, dict]]:
    """``(site path, template, context)`` for every page; contexts are plain data."""
    common = {"manifest": manifest, "model": manifest["model"], "settings": manifest["settings"],
              "versions": manifest["versions"], "command": manifest["command"]}
    result = [("index.html", "index.html", {**common, "models": model_cards(manifests)}),
              (manifest["page"], "model.html", common)]
    for layer in manifest["layers"]:
        result.append((layer["page"], "layer.html", {**common, "layer": layer}))
        sheets = [(p, next((f for f in p["features"] if f["layer"] == layer["name"]), None)) for p in manifest["photos"]]
        sheets = [(p, sheet) for p, sheet in sheets if sheet is not None]
        filters = layer["filters"]
        for i, f in enumerate(filters):
            strongest = sorted(sheets, key=lambda ps: -ps[1]["peak"][f["index"]])[:FEATURE_MAPS_SHOWN]
            result.append((f["page"], "filter.html", {
                **common, "layer": layer, "filter": f, "upstream": layer["upstream"],
                "features": [{"photo": p, "sheet": sheet} for p, sheet in strongest],
                "top": [{"photo": manifest["pool"][t["photo"]], "peak": t["peak"],
                         "crop": crop_style(manifest["pool"][t["photo"]], t["at"], layer["map"])} for t in f["top"]],
                "prev": filters[i - 1] if i > 0 else None,
                "next": filters[i + 1] if i + 1 < len(filters) else None,
            }))
    linked = {layer["name"]: ",".join(str(f["index"]) for f in layer["filters"]) for layer in manifest["layers"]}
    for photo in manifest["photos"]:
        groups: dict = {}
        for cam in photo["cams"]:
            groups.setdefault((cam["layer"], cam["method"]), []).append(cam)
        cam_groups = [{"layer": k[0], "method": k[1], "maps": v} for k, v in groups.items()]
        result.append((photo["page"], "photo.html", {**common, "photo": photo, "linked": linked,
                                                     "cam_groups": cam_groups}))
    return result


def static_files(templates: Path = TEMPLATES) -> dict[str, Path]:
    """``{site path: source file}`` of the assets every page shares."""
    static = templates / "static"
    return {f"static/{asset.relative_to(static).as_posix()}": asset for asset in sorted(static.rglob("*"))
            if asset.is_file()}


def render(manifest: dict, files: dict[str, str], cache, folder: SiteFolder,
           templates: Path = TEMPLATES) -> dict[str, int]:
    """Write tiles, static assets, the manifest and every page into ``folder``, then remove
    what an earlier build of this model published and this one does not; return counts."""
    model = manifest["model"]["slug"]
    manifests = folder.manifests(manifest)
    plan = pages(manifest, manifests)
    static = static_files(templates)
    owned = {*files, *(path for path, _, _ in plan if path != "index.html"), f"{model}/manifest.json"}
    shared = {"index.html", "search.js", *static}
    folder.begin(model, manifest["model"]["identity"], owned, shared)
    written = {"tiles": 0, "pages": 0, "unchanged": 0}
    for site_path, key in files.items():
        entry = cache.get(key)
        if entry is None:
            raise GalleryError(f"tile for {site_path} vanished from the cache during the build; run again")
        written["tiles" if folder.write(site_path, entry[0]) else "unchanged"] += 1
    for site_path, asset in static.items():
        folder.write(site_path, asset.read_bytes())
    folder.write(f"{model}/manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
    folder.write("search.js", search_script(search_index(manifests)))
    env = environment(templates)
    for site_path, template, context in plan:
        try:
            html = env.get_template(template).render(root=_root(site_path), page=site_path, **context)
        except Exception as exc:
            raise RuntimeError(f"rendering {site_path} from {template} failed: {exc}") from exc
        written["pages" if folder.write(site_path, html.encode("utf-8")) else "unchanged"] += 1
    written["removed"] = folder.finish(model, owned, shared)
    return written
