"""End-to-end builds of tiny models into tmp_path, checked file by file."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery import imaging
from gallery.orchestrate import pipeline
from gallery.site import pages as site
from gallery.config import RenderSettings

from ..conftest import tiny_backbone, tiny_transfer
from ..helpers.builds import build_config, check_site


@pytest.mark.slow
def test_build_writes_a_complete_site(tmp_path, classifier_file, photo_dir, labels_file):
    config = build_config(tmp_path, classifier_file, images=(photo_dir,), labels=labels_file)
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


@pytest.mark.slow
def test_every_layer_page_offers_its_filters_as_one_labelled_image(tmp_path, classifier_file):
    config = build_config(tmp_path, classifier_file, images=())
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


@pytest.mark.slow
def test_each_cam_method_is_named_and_explained_on_photo_pages(tmp_path, classifier_file, photo_dir):
    config = build_config(tmp_path, classifier_file, images=(photo_dir,), cam_methods=("cam", "scorecam"),
                     layers=("conv2",), filters=slice(0, 1))
    manifest = pipeline.build(config)
    check_site(config.out)
    html = (config.out / manifest["photos"][0]["page"]).read_text(encoding="utf-8")
    assert "<h2>CAM <span" in html and "<h2>Score-CAM <span" in html and "Grad-CAM" not in html
    assert "the dense layer&#39;s weights" in html and "masked by each channel" in html
    # Only filter 0 of conv2 is rendered: the other channels say so, and why, instead of a grey square.
    assert 'aria-label="conv2 filter 1, not rendered in this build">not rendered</span>' in html
    assert ("are filters of conv2 outside this build's selection (it rendered filter 0 of that layer); widen "
            "<code>--filters</code>") in html


@pytest.mark.slow
def test_pixel_attributions_get_their_own_groups_once_per_photo(tmp_path, classifier_file, photo_dir, capsys):
    """Saliency and SmoothGrad are computed once per photo and class whatever the CAM layers;
    Guided Grad-CAM once per layer; none of them has channels, so no "Channels behind"."""
    methods = ("saliency", "smoothgrad", "guided-gradcam")
    config = build_config(tmp_path, classifier_file, images=(photo_dir,), cam_methods=methods, cam_layers=("conv1", "conv2"),
                     layers=("conv2",), filters=slice(0, 1), top_k=2)
    manifest = pipeline.build(config)
    check_site(config.out)
    # Each of the 2 photos: image, peaks, sheet, predictions, and 2 classes × (saliency, SmoothGrad, Guided Grad-CAM
    # at 2 layers), a caricature at conv2, and the random-order curves of each class: 4 + 8 + 2 + 2; then 1 filter
    # image, its thumbnail and its layer's collage. No contributions.
    assert "33 tiles computed" in capsys.readouterr().err
    for photo in manifest["photos"]:
        groups = [(c["layer"], c["method"]) for c in photo["cams"]]
        assert groups == [(None, "saliency")] * 2 + [(None, "smoothgrad")] * 2 + [("conv1", "guided-gradcam")] * 2 \
            + [("conv2", "guided-gradcam")] * 2
        assert photo["contributions"] == []
        html = (config.out / photo["page"]).read_text(encoding="utf-8")
        assert "<h2>Saliency</h2>" in html and "<h2>SmoothGrad</h2>" in html
        assert "<h2>Guided Grad-CAM <span class=\"muted\">at conv1</span></h2>" in html
        assert "<h2>Guided Grad-CAM <span class=\"muted\">at conv2</span></h2>" in html
        assert html.count('class="ramp gray"') == 2 and html.count('class="ramp signed"') == 2
        assert "Channels behind" not in html and "averaged over 50 copies" in html
        # Pixel attributions are judged like every map: each carries its own faithfulness figure,
        # shown where the class is likely enough for a share of it to mean something.
        from gallery.site.pages import FAITHFUL_FLOOR

        assert len(re.findall(r'<span class="faith( muted)?"', html)) == len(photo["cams"]) == 8
        assert html.count('<span class="faith"') == sum(c["faithfulness"]["p"] >= FAITHFUL_FLOOR for c in photo["cams"])
        assert all(0 <= c["faithfulness"]["top"] <= 1 for c in photo["cams"])
        for cam in photo["cams"]:
            with Image.open(config.out / cam["image"]) as picture:
                assert picture.size == (photo["width"], photo["height"])
                pixels = np.asarray(picture.convert("RGB"), dtype="int16")
            if cam["method"] == "guided-gradcam":  # signed RGB: its colours apart
                assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 20
            else:  # grey magnitudes, black to white
                assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 8 and pixels.max() >= 250


@pytest.mark.slow
def test_guided_gradcam_is_refused_before_any_work_for_non_relu_models(tmp_path, photo_dir):
    import keras

    from gallery import GalleryError

    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="swish", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c2")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "swish.keras"
    keras.Model(inputs, outputs, name="swishy").save(path)
    config = build_config(tmp_path, path, images=(photo_dir,), cam_methods=("gradcam", "guided-gradcam"))
    # Named as its pages name it, by the file's stem, not by the name Keras keeps inside it.
    with pytest.raises(GalleryError, match=r"model 'swish' has other activations: silu \(1 layer, such as 'c1'\)"):
        pipeline.build(config)
    assert not list((tmp_path / "cache").rglob("*.bin"))


@pytest.mark.slow
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


@pytest.mark.slow
def test_rerun_recomputes_nothing_and_steps_only_touch_filters(tmp_path, classifier_file, photo_dir, capsys):
    # Without caricatures, which are optimized like tiles: their steps redraw them (tests/render/test_caricature.py).
    config = build_config(tmp_path, classifier_file, images=(photo_dir,), caricatures=())
    pipeline.build(config)
    capsys.readouterr()
    pipeline.build(config)
    err = capsys.readouterr().err
    assert "0 tiles computed" in err and "0 pages and 0 tiles written" in err
    more_steps = build_config(tmp_path, classifier_file, images=(photo_dir,),
                         render=RenderSettings(size=16, steps=4, batch=4), caricatures=())
    pipeline.build(more_steps)
    err = capsys.readouterr().err
    assert "24 tiles computed" in err  # the 11 filter images, their thumbnails, 2 layer collages, no photo tile
    assert "5 units: 1 settled from the cache, 4 to run" in err  # the photos' unit is looked up, not run


@pytest.mark.slow
def test_template_change_rerenders_pages_only(tmp_path, classifier_file, photo_dir, capsys, monkeypatch):
    config = build_config(tmp_path, classifier_file, images=(photo_dir,))
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


@pytest.mark.slow
def test_headless_model_explains_why_there_is_no_gradcam(tmp_path, photo_dir):
    path = tmp_path / "headless_net.keras"  # the site names it so; Keras calls it "backbone"
    tiny_backbone().save(path)
    config = build_config(tmp_path, path, images=(photo_dir,), filters=slice(0, 2))
    manifest = pipeline.build(config)
    check_site(config.out)
    page = (config.out / manifest["photos"][0]["page"]).read_text()
    assert "no classifier head" in page and "Grad-CAM for" not in page
    assert [len(layer["filters"]) for layer in manifest["layers"]] == [2, 2, 2]
    # The note names the model as the site does, and its shapes at the size the build fed it.
    model_page = (config.out / manifest["page"]).read_text()
    assert "backbone" not in model_page
    assert manifest["model"]["cam_note"].startswith("No predictions or class activation maps: headless_net has no")
    assert "its output is 224×224×3 for a 224×224 input" in manifest["model"]["cam_note"]
    assert "input 224×224×3 → output 224×224×3" in model_page and "?×?" not in model_page


@pytest.mark.slow
def test_nested_transfer_model_builds(tmp_path, photo_dir):
    path = tmp_path / "transfer.keras"
    tiny_transfer().save(path)
    config = build_config(tmp_path, path, images=(photo_dir,), layers=("inner/sep",))
    manifest = pipeline.build(config)
    check_site(config.out)
    assert manifest["layers"][0]["name"] == "inner/sep"
    assert manifest["photos"][0]["cams"][0]["layer"] == "inner/sep"


@pytest.mark.slow
def test_second_model_joins_the_index(tmp_path, classifier_file, photo_dir):
    pipeline.build(build_config(tmp_path, classifier_file, images=(photo_dir,), filters=slice(0, 1)))
    other = tmp_path / "other.keras"
    tiny_backbone().save(other)
    pipeline.build(build_config(tmp_path, other, images=(photo_dir,), filters=slice(0, 1)))
    index = (tmp_path / "site" / "index.html").read_text()
    assert "tiny/index.html" in index and "other/index.html" in index
    check_site(tmp_path / "site")


@pytest.mark.slow
def test_variant_images_appear_on_filter_pages(tmp_path, classifier_file, photo_dir):
    config = build_config(tmp_path, classifier_file, images=(photo_dir,), layers=("conv2",), filters=slice(0, 2),
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
        assert f"mean {site.sig(item['activation'])}</figcaption>" in html  # named, beside the tile's peak
    assert "What suppresses it" in html


def test_long_names_wrap_between_words_and_stay_escaped():
    assert str(site.breakable("efficientnet_lite0_imagenet")) == "efficientnet_<wbr>lite0_<wbr>imagenet"
    assert str(site.breakable("a<b>_c")) == "a&lt;b&gt;_<wbr>c"


@pytest.mark.slow
def test_the_first_layer_shows_each_filters_kernel_exactly(tmp_path, classifier_file):
    import keras

    from gallery.model import circuits

    config = build_config(tmp_path, classifier_file, images=(), filters=slice(0, 2))
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


def test_feature_sheets_rank_channels_by_peak_and_leave_spare_cells_clear(monkeypatch):
    maps = np.random.default_rng(0).normal(size=(4, 4, 5)).astype("float32")
    sheet, cell = imaging.feature_sheet(maps)
    assert sheet.shape == (2 * cell, 3 * cell, 4)  # 5 channels on a 3×2 grid: one spare cell
    assert (sheet[cell:, 2 * cell:, 3] == 0).all() and (sheet[:cell, :, 3] == 255).all()
    assert (sheet[cell:, :2 * cell, 3] == 255).all()
    layout = {"channels": 5, "peak": [1.0, 3.0, 3.0, 0.5, 2.0]}
    monkeypatch.setattr(site, "STRONGEST_CHANNELS", 4)
    ranked = site.strongest_channels(layout, {2: "p/2.html"})
    assert [(c["index"], c["peak"], c["page"]) for c in ranked] == [(1, 3.0, None), (2, 3.0, "p/2.html"),
                                                                    (4, 2.0, None), (0, 1.0, None)]


def test_figures_read_as_numbers_not_exponents():
    assert [site.sig(v) for v in (1873.2, -12345.6, 534.41, 0.0123, 0.0)] == ["1,873", "-12,346", "534", "0.0123", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("depthwise", [False, True])
def test_a_model_with_depthwise_convolutions_takes_the_settings_made_for_it(tmp_path, depthwise):
    """A CPU with AMX renders in bf16 where the model's convolutions are all dense; a model
    with depthwise ones takes ``render_if_depthwise`` (float32), which its tiles' keys show."""
    from ..conftest import tiny_classifier, tiny_transfer

    model = tiny_transfer() if depthwise else tiny_classifier()
    path = tmp_path / "m.keras"
    model.save(path)
    config = build_config(tmp_path, path, render=RenderSettings(size=16, steps=4, batch=4, precision="bfloat16"),
                     render_if_depthwise=RenderSettings(size=16, steps=2, batch=4), filters=slice(0, 1),
                     caricatures=(), cam_methods=("gradcam",))
    data = pipeline.build(config)
    assert data["settings"]["steps"] == (2 if depthwise else 4), data["settings"]
    assert data["settings"].get("precision", "float32") == ("float32" if depthwise else "bfloat16")
