"""Folders of many photos: streamed in batches, every photo ranks the filters, pages are capped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from gallery import feature_maps
from gallery.orchestrate import pipeline
from gallery.config import BuildConfig, RenderSettings
from gallery.photos.examples import TopExamples, peaks
from gallery.photos.sources import load_photos
from gallery.site.slugs import slug

from ..conftest import ROOT, tiny_classifier
from ..helpers.builds import check_site


def _folder(path, count, seed=0, side=24):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        # Brightness varies a lot between photos, so rankings are far from ties.
        scale = rng.uniform(0.1, 1.0)
        pixels = (rng.integers(0, 256, (side, side + i % 5, 3)) * scale).astype(np.uint8)
        Image.fromarray(pixels).save(path / f"p{i:04d}.png")
    return path


def test_top_examples_keep_the_k_best_photos_per_channel():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(9, 3, 4, 5))  # 9 photos, 3×4 maps, 5 channels
    top = TopExamples(3)
    for photo, m in enumerate(maps):
        top.add("conv", photo, peaks(m))
    best = maps.reshape(9, 12, 5).max(axis=1)  # (photos, channels)
    for channel in range(5):
        found = top.top("conv", channel)
        assert [f["photo"] for f in found] == list(np.argsort(-best[:, channel], kind="stable")[:3])
        where = maps[found[0]["photo"], :, :, channel].argmax()
        assert found[0]["at"] == [round((where // 4 + 0.5) / 3, 4), round((where % 4 + 0.5) / 4, 4)]


@pytest.mark.slow
def test_every_photo_ranks_the_filters_but_only_the_first_get_pages(tmp_path):
    model_path = tmp_path / "tiny.keras"
    model = tiny_classifier()
    model.save(model_path)
    photos = _folder(tmp_path / "photos", 30)
    config = BuildConfig(model=str(model_path), preprocess="none", images=(photos,), photo_pages=5, examples=3,
                         filters=slice(0, 2),  # unselected filters must not publish their top photos
                         render=RenderSettings(size=16, steps=2), out=tmp_path / "site", cache=tmp_path / "cache")
    manifest = pipeline.build(config)
    check_site(config.out)
    assert len(manifest["photos"]) == 5 and len(manifest["pool"]) == 30
    assert len(list((config.out / "tiny" / "photos").glob("*.html"))) == 5
    # The top photos of each filter are exactly the strongest of all 30 photos.
    pixels = [p.pixels for p in load_photos([photos])]
    for layer in manifest["layers"]:
        strongest = np.stack([feature_maps(model, x, layer["name"]).max(axis=(0, 1)) for x in pixels])
        for f in layer["filters"]:
            ranked = [manifest["pool"][t["photo"]]["name"] for t in f["top"]]
            expected = [f"p{i:04d}" for i in np.argsort(-strongest[:, f["index"]], kind="stable")[:3]]
            assert ranked == expected, (layer["name"], f["index"])
            np.testing.assert_allclose([t["peak"] for t in f["top"]],
                                       np.sort(strongest[:, f["index"]])[::-1][:3], atol=1e-3)
    # Pool photos are published only when some filter shows them.
    shown = {t["photo"] for layer in manifest["layers"] for f in layer["filters"] for t in f["top"]}
    published = {i for i, p in enumerate(manifest["pool"]) if p["image"]}
    assert published == shown | set(range(5))
    page = (config.out / manifest["layers"][0]["filters"][0]["page"]).read_text(encoding="utf-8")
    assert "top 3 of 30" in page


_PEAK = """
import resource, sys, tracemalloc
from pathlib import Path
from gallery.orchestrate import pipeline
from gallery.config import BuildConfig, RenderSettings
root, count = Path(sys.argv[1]), int(sys.argv[2])
config = BuildConfig(model=str(root / "tiny.keras"), preprocess="none", images=(root / "photos",), photo_pages=8,
                     render=RenderSettings(size=16, steps=1), out=root / "site", cache=root / "cache")
tracemalloc.start()
manifest = pipeline.build(config)
peak = tracemalloc.get_traced_memory()[1]
assert len(manifest["pool"]) == count
print(peak / 1e6, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_mb(tmp_path, count) -> tuple[float, float]:
    """``(traced, resident)`` peak memory of a build in MB, in a process of its own (what
    earlier tests left in this one would blur the comparison). Traced memory is Python's
    and numpy's; resident memory is everything, TensorFlow's allocations included."""
    tmp_path.mkdir()
    tiny_classifier().save(tmp_path / "tiny.keras")
    _folder(tmp_path / "photos", count, side=256)  # 500 of them decoded at once would be 100 MB
    run = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path), str(count)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    traced, resident = map(float, run.stdout.strip().splitlines()[-1].split())
    return traced, resident


@pytest.mark.slow
def test_a_500_photo_folder_builds_with_bounded_memory(tmp_path):
    """Peak memory for 500 photos stays close to that for 50, Python's and the process's."""
    small = _peak_mb(tmp_path / "small", 50)
    large = _peak_mb(tmp_path / "large", 500)
    report = f"50 photos peaked at {small[0]:.1f} MB traced, {small[1]:.0f} MB resident; 500 at " \
             f"{large[0]:.1f} MB and {large[1]:.0f} MB"
    assert large[0] < 1.5 * small[0] + 4, report
    assert large[1] < small[1] + 40, report


@pytest.mark.slow
def test_photos_whose_names_meet_keep_pages_of_their_own(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shaped = slug("A")  # a file named exactly what "A" would hash to
    names = ["cat.png", "cat.jpg", "cat-2.png", "A.png", f"{shaped}.png"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(folder / name)
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    config = BuildConfig(model=str(model), preprocess="none", filters=slice(0, 1), images=(folder,),
                         render=RenderSettings(size=16, steps=1), out=tmp_path / "site", cache=tmp_path / "cache")
    manifest = pipeline.build(config)
    photos = manifest["photos"]
    assert len(photos) == 5 and len({p["page"] for p in photos}) == 5 and len({p["image"] for p in photos}) == 5
    assert sorted(p["name"] for p in photos) == sorted(["cat", "cat.png", "cat-2", "A", shaped])
    for photo in photos:  # each page shows its own photo, not another's
        shown = np.asarray(Image.open(config.out / photo["image"]))
        source = next(n for n in names if n.startswith(photo["name"]) and (photo["name"] != "cat" or n == "cat.jpg"))
        assert abs(int(shown.mean()) - 40 * names.index(source)) <= 2, (photo["name"], source)
    check_site(config.out)


def test_what_a_folder_holds_besides_photos_is_listed(tmp_path, capsys):
    folder = _folder(tmp_path / "photos", 1)
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / ".hidden.png").write_bytes((folder / "p0000.png").read_bytes())
    found = load_photos([folder])
    err = capsys.readouterr().err
    assert [p.name for p in found] == ["p0000"]
    assert "skipping 3 entries" in err
    for part in ("'sub/' (a folder", "'pipe.png' (not a regular file)", "'.hidden.png' (hidden)"):
        assert part in err


def test_a_huge_file_is_refused_before_its_bytes_are_read(tmp_path, capsys):
    folder = _folder(tmp_path / "photos", 1)
    huge = folder / "disk.png"
    with open(huge, "wb") as f:  # sparse: a PNG header, then 6 GB of nothing on disk
        f.write((folder / "p0000.png").read_bytes()[:64])
        f.truncate(6 * 2**30)
    start = time.monotonic()
    found = load_photos([folder])
    assert time.monotonic() - start < 5
    assert [p.name for p in found] == ["p0000"]
    assert "'disk.png' is 6.0 GiB, larger than any photo" in capsys.readouterr().err.replace(str(folder) + "/", "")
