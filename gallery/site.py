"""Writes the static site from a manifest: tiles from the cache, pages from Jinja2.

The only module that imports Jinja2. Pages use relative links only, so the site opens
from ``file://`` and can be copied to any static host. Files whose bytes have not
changed are left untouched, so rebuilds and syncs to a host stay cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .cache import Cache, write_atomic
from .errors import GalleryError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data)
    return True


def _root(page: str) -> str:
    return "../" * page.count("/")


def models_in(out: Path, current: dict) -> list[dict]:
    """Every model already built into ``out`` plus the current one, for the site index."""
    found = {current["model"]["slug"]: current}
    for path in sorted(out.glob("*/manifest.json")):
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
            found.setdefault(other["model"]["slug"], other)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [
        {"model": m["model"], "page": m["page"], "layers": len(m["layers"]),
         "filters": sum(len(layer["filters"]) for layer in m["layers"]), "photos": len(m["photos"]),
         "thumb": next((layer["filters"][0]["image"] for layer in reversed(m["layers"]) if layer["filters"]), None)}
        for m in found.values()
    ]


def pages(manifest: dict, out: Path) -> list[tuple[str, str, dict]]:
    """``(site path, template, context)`` for every page; contexts are plain data."""
    common = {"manifest": manifest, "model": manifest["model"], "settings": manifest["settings"],
              "versions": manifest["versions"], "command": manifest["command"]}
    result = [("index.html", "index.html", {**common, "models": models_in(out, manifest)}),
              (manifest["page"], "model.html", common)]
    for layer in manifest["layers"]:
        result.append((layer["page"], "layer.html", {**common, "layer": layer}))
        features = [
            {"photo": p, "sheet": next(f for f in p["features"] if f["layer"] == layer["name"])}
            for p in manifest["photos"] if any(f["layer"] == layer["name"] for f in p["features"])
        ]
        filters = layer["filters"]
        for i, f in enumerate(filters):
            result.append((f["page"], "filter.html", {
                **common, "layer": layer, "filter": f, "features": features,
                "prev": filters[i - 1] if i > 0 else None,
                "next": filters[i + 1] if i + 1 < len(filters) else None,
            }))
    linked = {layer["name"]: ",".join(str(f["index"]) for f in layer["filters"]) for layer in manifest["layers"]}
    for photo in manifest["photos"]:
        result.append((photo["page"], "photo.html", {**common, "photo": photo, "linked": linked}))
    return result


def render(manifest: dict, files: dict[str, str], cache: Cache, out: Path,
           templates: Path = TEMPLATES) -> dict[str, int]:
    """Write tiles, static assets, the manifest and every page; return counts."""
    out = Path(out)
    written = {"tiles": 0, "pages": 0, "unchanged": 0}
    for site_path, key in files.items():
        entry = cache.get(key)
        if entry is None:
            raise GalleryError(f"tile for {site_path} vanished from the cache during the build; run again")
        written["tiles" if _write_if_changed(out / site_path, entry[0]) else "unchanged"] += 1
    static = templates / "static"
    for asset in sorted(static.rglob("*")):
        if asset.is_file():
            _write_if_changed(out / "static" / asset.relative_to(static), asset.read_bytes())
    model_dir = out / manifest["model"]["slug"]
    _write_if_changed(model_dir / "manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
    env = environment(templates)
    for site_path, template, context in pages(manifest, out):
        try:
            html = env.get_template(template).render(root=_root(site_path), page=site_path, **context)
        except Exception as exc:
            raise RuntimeError(f"rendering {site_path} from {template} failed: {exc}") from exc
        written["pages" if _write_if_changed(out / site_path, html.encode("utf-8")) else "unchanged"] += 1
    return written
