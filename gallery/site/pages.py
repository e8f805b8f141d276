"""Writes the static site from a manifest: tiles from the cache, pages from Jinja2.

The only module that imports Jinja2. Pages use relative links only, so the site opens
from ``file://`` and can be copied to any static host. Files whose bytes have not
changed are left untouched, so rebuilds and syncs to a host stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from ..attribution import FAIL_AT, KEEP, SMOOTHGRAD_NOISE, SMOOTHGRAD_SAMPLES
from ..errors import GalleryError
from .folder import SiteFolder
from .records import Manifest, plain

# How photo pages name each method (gallery.photos.explain.METHODS), and what their maps
# show: for the CAM family, what weighs the layer's channels; for the pixel attributions,
# what a pixel's brightness means.
CAM_TITLES = {
    "cam": ("CAM", "the dense layer's weights from each channel's global average to the class score"),
    "gradcam": ("Grad-CAM", "gradients of the pre-softmax score, averaged over the map"),
    "gradcam++": ("Grad-CAM++", "positive gradients of the pre-softmax score, weighted pixel by pixel"),
    "scorecam": ("Score-CAM", "how much the class probability rises when the photo is masked by each channel"),
    "layercam": ("LayerCAM", "positive gradients of the pre-softmax score, unit by unit"),
    "saliency": ("Saliency", "How strongly each pixel sways the pre-softmax class score: the magnitude of its "
                 "gradient, the largest of its three colours (Simonyan et al., 2014)"),
    "smoothgrad": ("SmoothGrad", f"The same gradient magnitude, averaged over {SMOOTHGRAD_SAMPLES} copies of the photo "
                   f"with Gaussian noise of {100 * SMOOTHGRAD_NOISE:.0f}% of its pixel range, which removes the "
                   "gradient's speckle (Smilkov et al., 2017)"),
    "guided-gradcam": ("Guided Grad-CAM", "Guided backpropagation (only gradients that raise the score pass each "
                       "ReLU) times the Grad-CAM map: the pixels and colours behind the class, where Grad-CAM "
                       "finds it (Selvaraju et al., 2017)"),
}
# How each pixel attribution is drawn; every other method is a heat map over the photo.
PICTURES = {"saliency": "magnitude", "smoothgrad": "magnitude", "guided-gradcam": "signed"}



def _templates() -> Path:
    """Inside the package when installed (a wheel carries them as ``gallery/templates``),
    beside it in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


TEMPLATES = _templates()


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
    env.filters["share"] = share
    env.filters["breakable"] = breakable
    env.filters["sig"] = sig
    env.filters["placeholders"] = lambda command: sorted(set(re.findall(r'"\$([A-Z_]+_DIR)"', command or "")))
    return env


def share(v: float | None) -> str:
    """A share of a probability, whole percent: ``None`` (no probability to share) as "n/a",
    and rises past tenfold as "> 999%" rather than a long number."""
    if v is None:
        return "n/a"
    return "> 999%" if v > 9.995 else f"{100 * v:.0f}%"


# Below this probability a class's faithfulness shares are noise: a share of 0.1% that
# becomes 0.5% reads "500%". Its map is shown, its figures are not (the page says why).
FAITHFUL_FLOOR = 0.05


def map_columns(count: int) -> int:
    """Columns for a method's ``count`` maps on a wide screen: all in one row up to five,
    else the count of 3 to 5 that leaves the fullest last row (no orphan)."""
    if count <= 5:
        return max(count, 1)
    return max((5, 4, 3), key=lambda c: (count % c == 0, count % c))


def faithfulness_summary(maps: list[dict]) -> dict | None:
    """The mean of the maps' top and bottom shares, each counted at most 100%: one minus
    Chattopadhay et al.'s "Average Drop" (WACV 2018), so a class whose probability rises
    when pixels go (often the least likely ones) cannot outweigh the rest."""
    shares = [m["faithfulness"] for m in maps if m["faithfulness"]["top_share"] is not None]
    if not shares:
        return None
    return {"maps": len(shares),
            **{side: sum(min(f[f"{side}_share"], 1.0) for f in shares) / len(shares) for side in ("top", "bottom")}}


CURVE_BOX = (120, 40)  # the curves' plot, in its SVG's own units (drawn at that many CSS pixels)


def curve_plot(f: dict) -> dict:
    """A map's curves as SVG polylines (plain strings) in a :data:`CURVE_BOX` plot, the
    probability axis up to the highest point drawn; the random order's curves when known."""
    w, h = CURVE_BOX
    kinds = [("deletion", f), ("insertion", f)]
    if f["random"]:
        kinds += [("random-deletion", {"deletion": f["random"]["deletion"]}),
                  ("random-insertion", {"insertion": f["random"]["insertion"]})]
    top = max(max(max(found[kind.split("-")[-1]]["y"]) for kind, found in kinds), 1e-9)
    lines = {kind.replace("-", "_"): " ".join(f"{x * w:.1f},{h - y / top * h:.1f}"
                                             for x, y in zip(f["x"], found[kind.split("-")[-1]]["y"]))
             for kind, found in kinds}
    return {"width": w, "height": h, "top": top, **lines}


def curve_summary(maps: list[dict]) -> dict | None:
    """The mean deletion and insertion areas of a method's maps, and of their random-order
    baselines, over the maps whose class is likely enough to have figures."""
    shown = [m["faithfulness"] for m in maps if m["faithfulness"]["p"] >= FAITHFUL_FLOOR and m["faithfulness"]["random"]]
    if not shown:
        return None
    mean = lambda get: sum(map(get, shown)) / len(shown)  # noqa: E731
    return {kind: {"auc": mean(lambda f: f[kind]["auc"]), "random": mean(lambda f: f["random"][kind]["auc"])}
            for kind in ("deletion", "insertion")}


def sig(value: float) -> str:
    """Three significant figures, but whole numbers from 1,000 up: "1,873", not "1.87e+03"."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def breakable(name) -> Markup:
    """``name`` escaped, with a line-break opportunity after each ``_``, ``/`` and ``-`` and
    inside CamelCase (``Depthwise|Conv2D``), so long identifiers wrap between their words
    rather than inside one."""
    return Markup(re.sub(r"([_/-]|[a-z](?=[A-Z]))", r"\1<wbr>", str(escape(name))))


def _root(page: str) -> str:
    return "../" * page.count("/")


COVERS = 4  # tiles on a model's card


def covers(layers: list[dict], count: int = COVERS) -> list[str]:
    """A model's card tiles: from ``count`` layers spread from its first rendered layer to
    its last, each layer's strongest filter by peak (a dead or flat filter 0 says little of
    what the model learned); pending tiles only where a layer has nothing rendered yet."""
    shown = [layer for layer in layers if layer["filters"]]
    if len(shown) > count:
        shown = [shown[round(i * (len(shown) - 1) / (count - 1))] for i in range(count)] if count > 1 else shown[-1:]
    thumbs = []
    for layer in shown:
        done = [f for f in layer["filters"] if not f["pending"]]
        best = max(done, key=lambda f: (f["peak"] if f["peak"] is not None else f["activation"], -f["index"]),
                   default=layer["filters"][0])
        thumbs.append(best["thumb"])
    return thumbs


def model_cards(manifests: list[dict]) -> list[dict]:
    return [
        {"model": m["model"], "page": m["page"], "layers": len(m["layers"]),
         "filters": sum(len(layer["filters"]) for layer in m["layers"]), "photos": len(m["photos"]),
         "thumbs": covers(m["layers"])}
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
                           "f": [f["index"] for f in layer["filters"]], "c": layer["channels"]})
        for photo in m["photos"]:
            entries.append({"k": "photo", "l": photo["name"], "u": photo["page"], "d": model})
            for pred in photo["predictions"]:
                entries.append({"k": "class", "l": pred["name"], "u": photo["page"], "p": round(pred["probability"], 4),
                                "d": f"{photo['name']} · {100 * pred['probability']:.1f}% · {model}"})
    return {"entries": entries, "layers": layers}


def search_script(index: dict) -> bytes:
    # ASCII-only JSON escapes U+2028/9 and every non-ASCII name; "<\/" keeps it inert even inline.
    text = json.dumps(index, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    return f"window.GALLERY_SEARCH = {text};\n".encode("ascii")


FEATURE_MAPS_SHOWN = 12  # a filter page shows its feature maps on the photos it likes best
STRONGEST_CHANNELS = 24  # a photo page shows first, per layer, the channels it drives hardest


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
    """``(site path, template, context)`` for every page; contexts are plain data.

    Each page gets only what it shows, so a refresh can tell which pages changed by
    comparing contexts, and renders only those.
    """
    own = [_building(manifest)] if manifest["status"] is not None else []
    common = {"model": manifest["model"], "settings": manifest["settings"], "versions": manifest["versions"],
              "command": manifest["command"], "model_page": manifest["page"], "building": own}
    reproduce = [{key: m[key] for key in ("model", "command", "settings", "versions")} for m in manifests]
    result = [("index.html", "index.html", {**common, "models": model_cards(manifests), "reproduce": reproduce,
                                            "building": [_building(m) for m in manifests if m.get("status")]}),
              (manifest["page"], "model.html", {**common, "manifest": manifest, "fail_at": FAIL_AT,
                                                "titles": {m: t[0] for m, t in CAM_TITLES.items()},
                                                "pages_of": {layer["name"]: layer["page"] for layer in manifest["layers"]}})]
    rendered = {layer["name"]: index_ranges([f["index"] for f in layer["filters"]]) for layer in manifest["layers"]}
    for layer in manifest["layers"]:
        result.append((layer["page"], "layer.html", {**common, "layer": layer}))
        sheets = [(p, next((f for f in p["features"] if f["layer"] == layer["name"]), None)) for p in manifest["photos"]]
        sheets = [(p, sheet) for p, sheet in sheets if sheet is not None]
        filters = layer["filters"]
        about = {"name": layer["name"], "page": layer["page"], "kernels": layer["kernels"], "linear": layer["linear"],
                 "activation": layer["activation"]}
        for i, f in enumerate(filters):
            strongest = sorted(sheets, key=lambda ps: -ps[1]["peak"][f["index"]])[:FEATURE_MAPS_SHOWN]
            result.append((f["page"], "filter.html", {
                **common, "layer": about, "filter": f, "upstream": layer["upstream"],
                "rendered_upstream": rendered.get(layer["upstream"]),
                "pool_size": len(manifest["pool"]),
                "features": [{"photo": _photo_link(p), "sheet": sheet} for p, sheet in strongest],
                "top": [{"photo": manifest["pool"][t["photo"]], "peak": t["peak"],
                         "crop": crop_style(manifest["pool"][t["photo"]], t["at"], layer["map"])} for t in f["top"]],
                "prev": _filter_link(filters[i - 1]) if i > 0 else None,
                "next": _filter_link(filters[i + 1]) if i + 1 < len(filters) else None,
            }))
    linked = {layer["name"]: ",".join(str(f["index"]) for f in layer["filters"]) for layer in manifest["layers"]}
    filter_pages = {layer["name"]: {f["index"]: f["page"] for f in layer["filters"]} for layer in manifest["layers"]}
    for photo in manifest["photos"]:
        groups: dict = {}
        for cam in photo["cams"]:
            groups.setdefault((cam["layer"], cam["method"]), []).append(cam)
        checks = {(c["layer"], c["method"]): c for c in photo["sanity"]}
        method_groups = [{"layer": k[0], "method": k[1], "title": CAM_TITLES[k[1]][0], "about": CAM_TITLES[k[1]][1],
                          "kind": PICTURES.get(k[1], "heat"),
                          "maps": [{**m, "plot": curve_plot(m["faithfulness"])} for m in v],
                          "summary": faithfulness_summary(v), "curves": curve_summary(v),
                          "sanity": checks.get(k), "columns": map_columns(len(v))}
                         for k, v in groups.items()]
        # What a reader wants first: the class activation maps; pixel attributions after the feature maps.
        cam_groups = [g for g in method_groups if g["kind"] == "heat"]
        pixel_groups = [g for g in method_groups if g["kind"] != "heat"]
        features = [{**f, "strongest": strongest_channels(f, filter_pages.get(f["layer"], {}))} for f in photo["features"]]
        result.append((photo["page"], "photo.html", {**common, "photo": photo, "linked": linked, "rendered": rendered,
                                                     "cam_groups": cam_groups, "pixel_groups": pixel_groups, "kept": KEEP,
                                                     "faithful_floor": FAITHFUL_FLOOR, "features": features,
                                                     "fail_at": FAIL_AT}))
    return result


def index_ranges(indices: list[int]) -> str:
    """``"filters 0–7, 12"``: indices as runs, how a page says which filters a build rendered."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}\u2013{b}" if b > a else str(a) for a, b in runs)
    return f"filter{'s' if len(indices) != 1 else ''} {text}" if runs else ""


def strongest_channels(sheet: dict, pages: dict[int, str]) -> list[dict]:
    """The channels of one feature sheet with the highest peaks, strongest first (ties by
    index), each with its filter page when the build rendered that filter."""
    order = sorted(range(sheet["channels"]), key=lambda k: (-sheet["peak"][k], k))[:STRONGEST_CHANNELS]
    return [{"index": k, "peak": sheet["peak"][k], "page": pages.get(k)} for k in order]


def _building(manifest: dict) -> dict:
    """A model still being built (or stopped part-way), as its pages name it and find its status."""
    return {"name": manifest["model"]["name"], "status": status_path(manifest["model"]["slug"])}


def _filter_link(f: dict) -> dict:
    return {"index": f["index"], "page": f["page"]}


def _photo_link(p: dict) -> dict:
    return {"name": p["name"], "page": p["page"]}


def static_files(templates: Path = TEMPLATES) -> dict[str, Path]:
    """``{site path: source file}`` of the assets every page shares."""
    static = templates / "static"
    return {f"static/{asset.relative_to(static).as_posix()}": asset for asset in sorted(static.rglob("*"))
            if asset.is_file()}


def status_path(model: str) -> str:
    """Each model's build status has a file of its own in the model's folder, so one model's
    build never removes or rewrites what another's pages load."""
    return f"{model}/status.js"


def status_script(model: str, status: dict) -> bytes:
    """``MODEL/status.js``: what pages of a model still being built say about its build.

    A plain script (browsers refuse fetch() from ``file://`` pages), which pages load again
    on a timer (``static/site.js``) to stay current while they are open.
    """
    text = json.dumps(status, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    name = json.dumps(model, ensure_ascii=True)
    return f"(window.GALLERY_STATUS = window.GALLERY_STATUS || {{}})[{name}] = {text};\n".encode("ascii")


class SiteWriter:
    """Writes a model's site into its folder, again and again as the build settles units.

    Each :meth:`write` writes only what changed since the last: tiles not yet published,
    and pages whose context changed (pages are compared by a digest of their context, so
    unchanged ones are not even rendered). A page that does not exist yet is first
    written as a stub that links nowhere, so that however a refresh is interrupted, every
    link of every page on disk resolves: tiles come before the pages that show them, and
    every page exists before any page links to it. The final write drops the status,
    and removes what the inventory lists and this build no longer publishes.
    """

    def __init__(self, folder: SiteFolder, cache, templates: Path | None = None):
        templates = templates or TEMPLATES  # looked up now, so a test can point it elsewhere
        self.folder, self.cache, self.templates = folder, cache, templates
        self.env = environment(templates)
        self.static = static_files(templates)
        self._published: dict[str, str] = {}  # tile path -> key written
        self._contexts: dict[str, str] = {}  # page -> digest of the context it was rendered from

    def write(self, typed: Manifest, files: dict[str, str]) -> dict[str, int]:
        """Publish ``typed``; return counts of tiles and pages written and left unchanged.

        Pages are made from the manifests as plain data, what ``manifest.json`` holds: a
        template reads what a reader of the file reads (Jinja's ``.get`` for a key older
        manifests lack), calls no method of a record, and a page's context compares as JSON.
        """
        model = typed.model.slug
        final = typed.status is None
        manifest = plain(typed)
        manifests = [manifest if m is typed else plain(m) for m in self.folder.manifests(typed)]
        plan = pages(manifest, manifests)
        owned = {*files, *(path for path, _, _ in plan if path != "index.html"), f"{model}/manifest.json",
                 *(() if final else (status_path(model),))}
        shared = {"index.html", "search.js", *self.static}
        self.folder.begin(model, typed.model.identity, owned, shared)
        written = {"tiles": 0, "pages": 0, "unchanged": 0}
        for site_path, key in files.items():
            if self._published.get(site_path) == key:
                continue
            entry = self.cache.get(key)
            if entry is None:
                raise GalleryError(f"tile for {site_path} vanished from the cache during the build; run again")
            written["tiles" if self.folder.write(site_path, entry[0]) else "unchanged"] += 1
            self._published[site_path] = key
        for site_path, asset in self.static.items():
            self.folder.write(site_path, asset.read_bytes())
        if not final:
            self.folder.write(status_path(model), status_script(model, manifest["status"]))
        for site_path, _, _ in plan:
            if not (self.folder.root / site_path).exists():
                self.folder.write(site_path, self._stub(site_path))
        self.folder.write(f"{model}/manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
        self.folder.write("search.js", search_script(search_index(manifests)))
        for site_path, template, context in plan:
            digest = hashlib.blake2b(json.dumps([template, context], sort_keys=True, default=str).encode("utf-8"),
                                     digest_size=16).hexdigest()
            if self._contexts.get(site_path) == digest:
                continue
            try:
                html = self.env.get_template(template).render(root=_root(site_path), page=site_path, **context)
            except Exception as exc:
                raise RuntimeError(f"rendering {site_path} from {template} failed: {exc}") from exc
            written["pages" if self.folder.write(site_path, html.encode("utf-8")) else "unchanged"] += 1
            self._contexts[site_path] = digest
        removed = self.folder.finish(model, owned, shared) if final else []
        # A status goes with every build (and the site-wide one of older versions with it).
        written["removed"] = sum(path not in (status_path(model), "status.js") for path in removed)
        return written

    def _stub(self, site_path: str) -> bytes:
        return self.env.get_template("_stub.html").render(root=_root(site_path)).encode("utf-8")


def render(manifest: Manifest, files: dict[str, str], cache, folder: SiteFolder,
           templates: Path | None = None) -> dict[str, int]:
    """Write the whole site of a finished build at once (see :class:`SiteWriter`)."""
    return SiteWriter(folder, cache, templates).write(manifest, files)
