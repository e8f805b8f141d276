"""The manifest's photos as records (:mod:`.records`): the pool every photo is in, each paged photo's page
(feature maps, caricatures, class maps with their faithfulness, randomization checks,
channel contributions), and the randomization check summed up per method.

Every image a part names is added to ``files`` (site path → cache key) as it is named.
"""

from __future__ import annotations

from .. import attribution
from .records import (Cam, Caricature, ChannelShare, Check, Contribution, Curve, Faithfulness, Feature, Photo,
                      PoolPhoto, Prediction, RandomCurves, SanitySummary)
from .urls import PENDING, Urls


def pool(urls: Urls, tiles: list, wanted: set[int], slugs: dict[str, str], files: dict) -> list[PoolPhoto]:
    """Every photo in the pool; ``image`` and ``page`` are
    ``None`` where nothing shows the photo (``wanted``: the indices a top list shows), and
    ``image`` is :data:`PENDING` for a paged photo not analysed yet."""
    entries = []
    for i, t in enumerate(tiles):
        pslug = slugs[t.name]
        published = t.paged or i in wanted
        folder = urls.photo(pslug) if t.paged else f"{urls.base}/photos/pool"
        image = (f"{folder}/photo.jpg" if t.paged else f"{folder}/{pslug}.jpg") if published else None
        entries.append(PoolPhoto(name=t.name, width=t.size[0], height=t.size[1],
                                 image=PENDING if t.pending and t.paged else image,
                                 page=f"{urls.photo(pslug)}.html" if t.paged else None))
    for entry, t in zip(entries, tiles):
        if entry.image and not t.pending:
            files[entry.image] = t.image_key
    return entries


def page(p, entry: PoolPhoto, pslug: str, urls: Urls, files: dict, *, class_names: list[str] | None,
         curve_x: list[float], cam_sources: dict) -> Photo:
    """A paged photo's page data; ``entry`` is its place in the pool."""
    folder = urls.photo(pslug)
    return Photo(
        name=p.name, slug=pslug, image=entry.image, width=p.size[0], height=p.size[1],
        page=f"{folder}.html", features=_features(p, folder, urls, files),
        cams=_cams(p, folder, urls, files, class_names, curve_x), pending=p.pending,
        predictions=[Prediction(**pr, name=class_name(class_names, pr["index"])) for pr in p.predictions],
        contributions=[Contribution(layer=layer, source=cam_sources.get(layer),
                                    channels=[ChannelShare(index=k, share=v, **urls.link(cam_sources.get(layer), k))
                                              for k, v in shares])
                       for layer, shares in p.contributions.items()],
        sanity=_checks(p, folder, urls, files, class_names),
    )


def class_name(class_names: list[str] | None, index: int) -> str:
    return class_names[index] if class_names else f"class {index}"


def _features(p, folder: str, urls: Urls, files: dict) -> list[Feature]:
    """The photo's feature-map sheet at each layer, with its caricature there."""
    features = []
    for layer_name, (key, layout) in p.features.items():
        sheet = f"{folder}/features-{urls.slug(layer_name)}.png"
        files[sheet] = key
        layer_dir = f"{urls.layer(layer_name)}/"
        features.append(Feature(layer=layer_name, layer_dir=layer_dir, layer_page=layer_dir + "index.html",
                                image=sheet, **{k: layout[k] for k in ("cols", "rows", "cell", "channels", "map")},
                                peak=layout["peak"],
                                caricature=_caricature(files, folder, urls.slug(layer_name),
                                                       p.caricatures.get(layer_name))))
    return features


def _caricature(files: dict, folder: str, layer_slug: str, found: dict | None) -> Caricature | None:
    """A photo's caricature at one layer (gallery.render.caricature), where the build drew one."""
    if found is None:
        return None
    path = f"{folder}/caricature-{layer_slug}.png"
    files[path] = found["key"]
    return Caricature(image=path, cosine=round(found["cosine"], 4))


def _cams(p, folder: str, urls: Urls, files: dict, class_names: list[str] | None, curve_x: list[float]) -> list[Cam]:
    """The photo's class maps and pixel attributions, each with its faithfulness."""
    cams = []
    baselines = {b["class"]: b for b in p.baselines}
    for cam in p.cams:
        path = (f"{folder}/cam-{urls.slug(cam['layer'])}-{cam['method']}-{cam['class']}.jpg" if cam["layer"]
                else f"{folder}/pixels-{cam['method']}-{cam['class']}.jpg")  # layer-free: saliency, SmoothGrad
        files[path] = cam["key"]
        cams.append(Cam(layer=cam["layer"], method=cam["method"], class_=cam["class"], image=path,
                        name=class_name(class_names, cam["class"]),
                        faithfulness=_faithfulness(cam, baselines.get(cam["class"]), curve_x)))
    return cams


def _faithfulness(cam: dict, baseline: dict | None, x: list[float]) -> Faithfulness:
    """A map's faithfulness (gallery.photos.faithfulness): the class probability with the
    whole photo (``p``), and with only the map's top or bottom pixels kept, each also as a
    share of ``p`` (``None`` where ``p`` is 0: there is nothing to keep a share of); its
    deletion and insertion curves at the shares ``x``, with their areas, and the same of
    the random-order baseline of its photo and class (``None`` when not known)."""
    p = cam["p"]
    return Faithfulness(p=p, top=cam["top"], bottom=cam["bottom"],
                        top_share=cam["top"] / p if p > 0 else None, bottom_share=cam["bottom"] / p if p > 0 else None,
                        x=x, **_curves(cam, x), random=RandomCurves(**_curves(baseline, x)) if baseline else None)


def _curves(found: dict, x: list[float]) -> dict[str, Curve]:
    return {kind: Curve(y=found[kind], auc=attribution.area(x, found[kind])) for kind in ("deletion", "insertion")}


def _checks(p, folder: str, urls: Urls, files: dict, class_names: list[str] | None) -> list[Check]:
    """The photo's randomization checks (Adebayo et al., 2018), one per method and layer."""
    checks = []
    for check in p.sanity:
        where = f"cam-{urls.slug(check['layer'])}" if check["layer"] else "pixels"
        path = f"{folder}/randomized-{where}-{check['method']}.jpg"
        files[path] = check["key"]
        checks.append(Check(layer=check["layer"], method=check["method"], image=path,
                            class_=check["class"], name=class_name(class_names, check["class"]),
                            layers=check["layers"], spearman=check["spearman"], ssim=check["ssim"],
                            fails=attribution.fails(check)))
    return checks


def sanity_summary(photos: list[Photo]) -> list[SanitySummary]:
    """Per method (and layer), the randomization check over every photo that has one: how
    many photos' maps failed it, and the mean rank correlation and SSIM at each level."""
    groups: dict = {}
    for photo in photos:
        for check in photo.sanity:
            groups.setdefault((check.layer, check.method), []).append(check)
    summary = []
    for (layer, method), checks in groups.items():
        levels = len(checks[0].spearman)
        mean = {k: [sum(getattr(c, k)[i] for c in checks) / len(checks) for i in range(levels)]
                for k in ("spearman", "ssim")}
        summary.append(SanitySummary(layer=layer, method=method, photos=len(checks), layers=checks[0].layers,
                                     failed=sum(c.fails for c in checks), **mean, fails=attribution.fails(mean)))
    return summary
