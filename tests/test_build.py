"""End-to-end builds of tiny models into tmp_path, checked file by file."""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from gallery.build import pipeline
from gallery.site import pages as site
from gallery.config import BuildConfig, RenderSettings

from .conftest import tiny_backbone, tiny_transfer


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)
            if name == "style" and value:
                self.refs += re.findall(r"url\('([^']+)'\)", value)


def check_site(out: Path) -> dict:
    """Every link and image resolves inside the site; every image decodes; nothing external."""
    pages = sorted(out.rglob("*.html"))
    assert pages, "no pages written"
    images = set()
    for page in pages:
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for ref in parser.refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page}: external reference {ref}"
            assert not ref.startswith("/"), f"{page}: absolute path {ref}"
            if not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_relative_to(out.resolve()), f"{page}: {ref} leaves the site"
            assert target.is_file(), f"{page}: broken link {ref}"
            if target.suffix in (".png", ".jpg"):
                images.add(target)
    for image in images:
        with Image.open(image) as img:
            img.load()
    return {"pages": len(pages), "images": len(images)}


def _config(tmp_path, model_path, **overrides) -> BuildConfig:
    base = dict(model=str(model_path), preprocess="none", render=RenderSettings(size=16, steps=3, batch=4),
                out=tmp_path / "site", cache=tmp_path / "cache", command="python build.py --test")
    base.update(overrides)
    return BuildConfig(**base)


def test_build_writes_a_complete_site(tmp_path, classifier_file, photo_dir, labels_file):
    config = _config(tmp_path, classifier_file, images=(photo_dir,), labels=labels_file)
    manifest = pipeline.build(config)
    out = config.out
    counts = check_site(out)
    model_dir = out / "tiny"
    assert (out / "index.html").is_file() and (model_dir / "index.html").is_file()
    for layer, channels in (("conv1", 6), ("conv2", 5)):
        assert (model_dir / "layers" / layer / "index.html").is_file()
        for i in range(channels):
            assert (model_dir / "layers" / layer / f"{i}.html").is_file()
            with Image.open(model_dir / "layers" / layer / f"{i}.png") as img:
                assert img.size == (16, 16)
    photo_pages = sorted(p.name for p in (model_dir / "photos").glob("*.html"))
    assert len(photo_pages) == 2
    assert counts["pages"] == 1 + 1 + 2 + 11 + 2
    # Names from the labels file, escaped where they reach the page.
    fox = next(p for p in manifest["photos"] if p["name"] == "red fox")
    html = (out / fox["page"]).read_text(encoding="utf-8")
    assert len(fox["predictions"]) == 4 and "Grad-CAM" in html
    assert "<script>alert(1)</script>" not in html
    boat = (out / next(p for p in manifest["photos"] if p["name"] == "b<o>at")["page"]).read_text()
    assert "b&lt;o&gt;at" in boat and "b<o>at" not in boat
    assert json.loads((model_dir / "manifest.json").read_text())["model"]["name"] == "tiny"


def test_every_layer_page_offers_its_filters_as_one_labelled_image(tmp_path, classifier_file):
    config = _config(tmp_path, classifier_file, images=())
    manifest = pipeline.build(config)
    check_site(config.out)
    for layer in manifest["layers"]:
        html = (config.out / layer["page"]).read_text(encoding="utf-8")
        name = layer["collage"].rsplit("/", 1)[1]
        assert name == f"tiny-{layer['slug']}-filters.jpg" and f'/{name}" download>' in html
        with Image.open(config.out / layer["collage"]) as sheet:
            cells = np.asarray(sheet.convert("RGB"), dtype="float32")
        n = len(layer["filters"])
        cols = math.ceil(math.sqrt(n))
        assert cells.shape == (math.ceil(n / cols) * (96 + 16 + 4) + 4, cols * (96 + 4) + 4, 3)
        for i, f in enumerate(layer["filters"]):  # each cell is that filter's thumbnail, in order
            r, c = divmod(i, cols)
            with Image.open(config.out / f["thumb"]) as thumb:
                expected = np.asarray(thumb.convert("RGB"), dtype="float32")
            cell = cells[4 + r * 116: 4 + r * 116 + 96, 4 + c * 100: 4 + c * 100 + 96]
            assert np.abs(cell - expected).mean() < 6, (layer["name"], i)  # JPEG twice, nothing more
            label = cells[4 + r * 116 + 96: 4 + r * 116 + 112, 4 + c * 100: 4 + c * 100 + 96]
            assert label.min() < 100 and np.median(label) > 250  # dark text on white


def test_each_cam_method_is_named_and_explained_on_photo_pages(tmp_path, classifier_file, photo_dir):
    from gallery.photos.cams import METHODS
    from gallery.site.pages import CAM_TITLES

    assert set(CAM_TITLES) == set(METHODS)
    config = _config(tmp_path, classifier_file, images=(photo_dir,), cam_methods=("cam", "scorecam"),
                     layers=("conv2",), filters=slice(0, 1))
    manifest = pipeline.build(config)
    check_site(config.out)
    html = (config.out / manifest["photos"][0]["page"]).read_text(encoding="utf-8")
    assert "<h2>CAM <span" in html and "<h2>Score-CAM <span" in html and "Grad-CAM" not in html
    assert "the dense layer&#39;s weights" in html and "masked by each channel" in html
    # Only filter 0 of conv2 is rendered: the other channels say so, and why, instead of a grey square.
    assert 'aria-label="conv2 filter 1, not rendered in this build">not rendered</span>' in html
    assert "belong to conv2, filters this build did not render; add them with <code>--layers</code>" in html


def test_published_files_do_not_reveal_local_folders(tmp_path, classifier_file, photo_dir, labels_file, monkeypatch):
    from gallery import cli

    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    monkeypatch.chdir(home)  # the model, labels and photos all lie outside the working directory
    args = ["--model", str(classifier_file), "--preprocess", "none", "--labels", str(labels_file),
            "--images", str(photo_dir), "--size", "16", "--steps", "2",
            "--out", str(tmp_path / "site"), f"--cache={tmp_path / 'cache'}"]
    assert cli.main(args) == 0
    written = [f for f in (tmp_path / "site").rglob("*") if f.suffix in (".html", ".json", ".js")]
    assert written
    for file in written:
        assert str(tmp_path) not in file.read_text(encoding="utf-8"), file
    page = (tmp_path / "site" / "tiny" / "index.html").read_text(encoding="utf-8")
    assert "\u2026/tiny.keras" in page and f"\u2026/{labels_file.name}" in page


def test_rerun_recomputes_nothing_and_steps_only_touch_filters(tmp_path, classifier_file, photo_dir, capsys):
    config = _config(tmp_path, classifier_file, images=(photo_dir,))
    pipeline.build(config)
    capsys.readouterr()
    pipeline.build(config)
    err = capsys.readouterr().err
    assert "0 tiles computed" in err and "0 pages and 0 tiles written" in err
    more_steps = _config(tmp_path, classifier_file, images=(photo_dir,),
                         render=RenderSettings(size=16, steps=4, batch=4))
    pipeline.build(more_steps)
    err = capsys.readouterr().err
    assert "24 tiles computed" in err  # the 11 filter images, their thumbnails, 2 layer collages, no photo tile
    assert "5 units: 1 settled from the cache, 4 to run" in err  # the photos' unit is looked up, not run


def test_template_change_rerenders_pages_only(tmp_path, classifier_file, photo_dir, capsys, monkeypatch):
    config = _config(tmp_path, classifier_file, images=(photo_dir,))
    pipeline.build(config)
    templates = tmp_path / "templates"
    shutil.copytree(site.TEMPLATES, templates)
    layer_page = templates / "layer.html"
    layer_page.write_text(layer_page.read_text().replace("The number under each tile", "(edited) The number under each tile"))
    monkeypatch.setattr(site, "TEMPLATES", templates)
    capsys.readouterr()
    pipeline.build(config)
    err = capsys.readouterr().err
    assert "0 tiles computed" in err and "2 pages and 0 tiles written" in err
    assert "(edited)" in (config.out / "tiny" / "layers" / "conv1" / "index.html").read_text()


def test_headless_model_explains_why_there_is_no_gradcam(tmp_path, photo_dir):
    path = tmp_path / "backbone.keras"
    tiny_backbone().save(path)
    config = _config(tmp_path, path, images=(photo_dir,), filters=slice(0, 2))
    manifest = pipeline.build(config)
    check_site(config.out)
    page = (config.out / manifest["photos"][0]["page"]).read_text()
    assert "no classifier head" in page and "Grad-CAM for" not in page
    assert [len(layer["filters"]) for layer in manifest["layers"]] == [2, 2, 2]


def test_nested_transfer_model_builds(tmp_path, photo_dir):
    path = tmp_path / "transfer.keras"
    tiny_transfer().save(path)
    config = _config(tmp_path, path, images=(photo_dir,), layers=("inner/sep",))
    manifest = pipeline.build(config)
    check_site(config.out)
    assert manifest["layers"][0]["name"] == "inner/sep"
    assert manifest["photos"][0]["cams"][0]["layer"] == "inner/sep"


def test_second_model_joins_the_index(tmp_path, classifier_file, photo_dir):
    pipeline.build(_config(tmp_path, classifier_file, images=(photo_dir,), filters=slice(0, 1)))
    other = tmp_path / "other.keras"
    tiny_backbone().save(other)
    pipeline.build(_config(tmp_path, other, images=(photo_dir,), filters=slice(0, 1)))
    index = (tmp_path / "site" / "index.html").read_text()
    assert "tiny/index.html" in index and "other/index.html" in index
    check_site(tmp_path / "site")


def test_variant_images_appear_on_filter_pages(tmp_path, classifier_file, photo_dir):
    config = _config(tmp_path, classifier_file, images=(photo_dir,), layers=("conv2",), filters=slice(0, 2),
                     variants=("negative", "diversity"))
    manifest = pipeline.build(config)
    check_site(config.out)
    first = manifest["layers"][0]["filters"][0]
    assert [v["name"] for v in first["variants"]] == ["negative", "diversity"]
    negative, diverse = first["variants"]
    assert len(negative["images"]) == 1 and len(diverse["images"]) == 4
    assert negative["images"][0]["activation"] < first["activation"]
    html = (config.out / first["page"]).read_text(encoding="utf-8")
    for item in negative["images"] + diverse["images"]:
        assert (config.out / item["image"]).is_file() and Path(item["image"]).name in html
        assert f"mean {item['activation']:.3g}</figcaption>" in html  # named, beside the tile's peak
    assert "What suppresses it" in html


def test_long_names_wrap_between_words_and_stay_escaped():
    assert str(site.breakable("efficientnet_lite0_imagenet")) == "efficientnet_<wbr>lite0_<wbr>imagenet"
    assert str(site.breakable("a<b>_c")) == "a&lt;b&gt;_<wbr>c"


def test_the_first_layer_shows_each_filters_kernel_exactly(tmp_path, classifier_file):
    import keras

    from gallery.model import circuits

    config = _config(tmp_path, classifier_file, images=(), filters=slice(0, 2))
    manifest = pipeline.build(config)
    check_site(config.out)
    by_name = {layer["name"]: layer for layer in manifest["layers"]}
    assert by_name["conv2"]["kernels"] is None  # weighs feature maps, not colours
    sheet = by_name["conv1"]["kernels"]
    kernel = keras.ops.convert_to_numpy(keras.saving.load_model(classifier_file).get_layer("conv1").kernel).astype("float64")
    scale = np.abs(kernel).max()
    assert sheet["shape"] == "3×3×3" and (sheet["cols"], sheet["rows"]) == (3, 2) and sheet["scale"] == pytest.approx(scale)
    with Image.open(config.out / sheet["image"]) as image:
        pixels = np.asarray(image.convert("RGB")).astype("float64")
    for f in range(6):  # every filter of the layer, rendered or not: one 3×3 cell, one pixel per weight
        r, c = divmod(f, 3)
        expected = np.clip(np.round(128 + 127.5 * kernel[..., f] / scale), 0, 255)
        np.testing.assert_array_equal(pixels[3 * r:3 * r + 3, 3 * c:3 * c + 3], expected)
    html = (config.out / by_name["conv1"]["filters"][1]["page"]).read_text(encoding="utf-8")
    assert "kernel of filter 1, one square per weight" in html and "kernels.png" in html
    # A caffe model sees BGR: its kernel is shown in RGB.
    cells, _ = circuits.pixel_kernels(keras.saving.load_model(classifier_file), "conv1", "caffe")
    flipped = np.clip(np.round(128 + 127.5 * kernel[:, :, ::-1, 4] / scale), 0, 255)
    np.testing.assert_array_equal(cells[4], flipped)
