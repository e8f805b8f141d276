"""Folders of many photos: streamed in batches, every photo ranks the filters, pages are capped."""

from __future__ import annotations

import tracemalloc

import numpy as np
from PIL import Image

from gallery import feature_maps, pipeline
from gallery.config import BuildConfig, RenderSettings
from gallery.examples import TopExamples, peaks
from gallery.photos import load_photos

from .conftest import tiny_classifier
from .test_build import check_site


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


def _peak_traced_mb(tmp_path, count) -> float:
    tmp_path.mkdir()
    model_path = tmp_path / "tiny.keras"
    tiny_classifier().save(model_path)
    photos = _folder(tmp_path / "photos", count, side=40)
    config = BuildConfig(model=str(model_path), preprocess="none", images=(photos,), photo_pages=8,
                         render=RenderSettings(size=16, steps=1), out=tmp_path / "site", cache=tmp_path / "cache")
    tracemalloc.start()
    try:
        manifest = pipeline.build(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(manifest["pool"]) == count
    return peak / 1e6


def test_a_500_photo_folder_builds_with_bounded_memory(tmp_path):
    """Peak Python-side memory (numpy included) for 500 photos stays close to that for 50."""
    small = _peak_traced_mb(tmp_path / "small", 50)
    large = _peak_traced_mb(tmp_path / "large", 500)
    assert large < 1.5 * small + 4, f"50 photos peaked at {small:.1f} MB, 500 at {large:.1f} MB"
