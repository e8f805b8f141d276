#!/usr/bin/env python
"""Site budgets at full VGG16 scale, with synthetic tiles (no model work):

    python bench/site.py [--photos 4] [--pool 0] [--size 128] [--out /tmp/site-bench]

Prints, for 13 layers and 4,224 filters:
  * seconds to render the whole site (tiles copied from the cache, every page), then
    seconds for a rebuild where nothing changed, and the ratio between them;
  * the site's size on disk;
  * the time headless Chromium takes, from file://, to show the first screen of the
    512-filter block5_conv3 page (navigation start to every image in the viewport
    decoded), when Debian's chromium and Playwright are installed.
Budgets (issue 5): render < 15 s on 2 cores, site < 300 MB, first screen < 1 s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine  # first: it puts the repository on the path

from gallery import imaging
from gallery.site import manifest, pages as site
from gallery.orchestrate.cache import Cache, make_key  # noqa: E402
from gallery.photos.examples import TopExamples, peaks  # noqa: E402
from gallery.orchestrate.units.filters import THUMB_SIDE, FilterTile  # noqa: E402
from gallery.orchestrate.units.photos import PhotoResults, PhotoTiles  # noqa: E402
from gallery.site.folder import SiteFolder  # noqa: E402
from gallery.site.records import plain  # noqa: E402

# (name, channels, map side at a 224 input)
VGG16 = [("block1_conv1", 64, 224), ("block1_conv2", 64, 224), ("block2_conv1", 128, 112),
         ("block2_conv2", 128, 112), ("block3_conv1", 256, 56), ("block3_conv2", 256, 56),
         ("block3_conv3", 256, 56), ("block4_conv1", 512, 28), ("block4_conv2", 512, 28),
         ("block4_conv3", 512, 28), ("block5_conv1", 512, 14), ("block5_conv2", 512, 14),
         ("block5_conv3", 512, 14)]


def texture(rng, size):
    """A smooth random colour texture, compressing like real filter images (not like noise)."""
    spectrum = rng.normal(size=(size, size, 3)) + 1j * rng.normal(size=(size, size, 3))
    f = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None] ** 2)[..., None]
    image = np.real(np.fft.ifft2(spectrum / np.maximum(f, 1 / size) ** 1.2, axes=(0, 1)))
    image = (image - image.min()) / (np.ptp(image) + 1e-9)
    return (image * 255).astype("uint8")


def synthetic(cache: Cache, photos: int, size: int, extra: int = 0):
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(24):  # distinct images, reused under different keys
        image = texture(rng, size)
        pool.append((imaging.encode_png(image), imaging.encode_jpeg(imaging.resize(image, THUMB_SIDE, THUMB_SIDE), 85)))
    tiles = {}
    for name, channels, _ in VGG16:
        tiles[name] = []
        for i in range(channels):
            png, thumb = pool[(i * 7 + len(name)) % len(pool)]
            key, tkey = make_key(b="f", l=name, i=i), make_key(b="t", l=name, i=i)
            cache.put(key, png, {"activation": 1.0})
            cache.put(tkey, thumb)
            tiles[name].append(FilterTile(i, key, tkey, float(rng.normal(5, 5))))
    shots = PhotoResults([], TopExamples(8))
    images = [imaging.encode_jpeg(texture(rng, 480)[:, :, ::-1]) for _ in range(8)]
    for p in range(photos + extra):
        photo_key = make_key(b="photo", p=p)
        cache.put(photo_key, images[p % len(images)])
        result = PhotoTiles(f"photo {p}", photo_key, (480, 480), paged=p < photos, position=p)
        for name, channels, side in VGG16:
            maps = np.maximum(rng.normal(size=(side, side, channels)).astype("float32"), 0)
            found, layout, key = peaks(maps), {}, None
            if result.paged:
                sheet, cell = imaging.feature_sheet(maps)
                cols, rows = imaging.sheet_layout(channels)
                layout = {"cols": cols, "rows": rows, "cell": cell, "channels": channels}
                key = make_key(b="features", p=p, l=name)
                cache.put(key, imaging.encode_png(sheet), layout)
                result.features[name] = (key, {**layout, **found})
            shots.examples.add(name, p, found)
        shots.photos.append(result)
    return tiles, shots


def first_screen_ms(page_path: Path) -> float | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(chromium).exists():
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        page.wait_for_function("""() => Array.from(document.images).filter(i => {
            const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0;
          }).every(i => i.complete && i.naturalWidth > 0)""")
        ms = page.evaluate("() => performance.now()")
        browser.close()
        return ms


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=4, help="photos with pages")
    parser.add_argument("--pool", type=int, default=0, help="more photos that only rank the filters' top photos")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="site-bench-"))
    out = args.out or work / "site"
    shutil.rmtree(out, ignore_errors=True)
    cache = Cache(work / "cache")
    print(f"machine: {machine()}; synthetic VGG16: "
          f"{sum(c for _, c, _ in VGG16)} filters at {args.size} px, {args.photos} photos with pages, "
          f"{args.pool} more in the pool")
    start = time.perf_counter()
    tiles, shots = synthetic(cache, args.photos, args.size, args.pool)
    print(f"synthetic tiles made in {time.perf_counter() - start:.1f}s (not part of the budget)")
    folder = SiteFolder(out)
    folder.claim()
    info = {"name": "VGG16", "slug": "vgg16", "identity": "synthetic", "source": "synthetic", "keras_name": "vgg16",
            "fingerprint": "0" * 32, "params": 138357544, "input_shape": "224×224×3", "output_shape": "7×7×512",
            "preprocess": "caffe", "classes": None, "labels_source": None, "cam_note": "synthetic benchmark"}
    table = [{"name": n, "type": "Conv2D", "shape": f"{s}×{s}×{c}", "params": 0, "conv": True, "minor": False,
              "then": []} for n, c, s in VGG16]
    settings = {"size": args.size, "steps": 128, "seed": 0}
    timings = []
    for label in ("first render", "unchanged rebuild"):
        start = time.perf_counter()
        data, files = manifest.build(model_info=info, table=table, filter_tiles=tiles,
                                     channels={n: c for n, c, _ in VGG16}, photos=shots, class_names=None,
                                     settings=settings, command="python bench/site.py")
        written = site.render(data, files, cache, folder)
        timings.append(time.perf_counter() - start)
        print(f"{label:<18} {timings[-1]:6.2f}s  ({written['pages']} pages and {written['tiles']} tiles written, "
              f"{written['unchanged']} unchanged)")
    print(f"rebuild / first render: {timings[1] / timings[0]:.2f}x")
    env = site.environment()
    start = time.perf_counter()
    data = plain(data)
    pages = site.pages(data, [data])
    for path, template, context in pages:
        env.get_template(template).render(root=site._root(path), page=path, **context)
    print(f"templates alone: {len(pages)} pages in {time.perf_counter() - start:.2f}s (budget 15 s)")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    count = sum(1 for _ in out.rglob("*.html"))
    print(f"site size: {size / 1e6:.1f} MB in {count} pages (budget 300 MB)")
    ms = first_screen_ms(out / "vgg16" / "layers" / "block5_conv3" / "index.html")
    print("first screen of block5_conv3 (512 filters) from file://: "
          + (f"{ms:.0f} ms (budget 1000 ms)" if ms is not None else "skipped (no chromium/playwright)"))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
