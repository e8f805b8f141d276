"""Integration on real trained weights from ../shared (skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gallery import load_model
from gallery.orchestrate import pipeline
from gallery.render.optimize import FilterRenderer
from gallery.config import BuildConfig, RenderSettings

from ..conftest import SHARED_MODELS, SHARED_SAMPLES, needs_shared
from ..helpers.builds import check_site

pytestmark = [needs_shared(), pytest.mark.shared, pytest.mark.slow]  # full-size models


def test_efficientnet_names_the_egyptian_cat(tmp_path):
    config = BuildConfig(
        model=str(SHARED_MODELS / "efficientnet_lite0_imagenet.keras"),
        labels=SHARED_MODELS / "imagenet_classes.json",
        layers=("stem_conv", "block0_dwconv", "top_conv"), filters=slice(0, 2),
        render=RenderSettings(size=32, steps=2), images=(SHARED_SAMPLES,),
        out=tmp_path / "site", cache=tmp_path / "cache",
    )
    manifest = pipeline.build(config)
    check_site(config.out)
    cat = next(p for p in manifest["photos"] if p["name"] == "cat")
    assert cat["predictions"][0]["name"] == "Egyptian cat"
    assert cat["predictions"][0]["probability"] == pytest.approx(0.79, abs=0.03)
    html = (config.out / cat["page"]).read_text(encoding="utf-8")
    assert "Egyptian cat" in html and "top_activation" in html
    # Its Grad-CAM is faithful: the map's top 30% of pixels keep the class (102% measured),
    # its bottom 30% lose it (1%).
    faith = next(c for c in cat["cams"] if c["name"] == "Egyptian cat")["faithfulness"]
    assert faith["top_share"] > 0.7 and faith["bottom_share"] < 0.1, faith
    coffee = next(p for p in manifest["photos"] if p["name"] == "coffee")
    assert coffee["predictions"][0]["name"] == "espresso"


def test_vgg16_hed_filters_and_feature_maps(tmp_path):
    config = BuildConfig(
        model=str(SHARED_MODELS / "vgg16_hed_notop.keras"), preprocess="caffe",
        layers=("block1_conv1", "block5_conv3"), filters=slice(0, 3),
        render=RenderSettings(size=48, steps=32), images=(SHARED_SAMPLES / "cat.png",),
        out=tmp_path / "site", cache=tmp_path / "cache",
    )
    manifest = pipeline.build(config)
    check_site(config.out)
    model = load_model(config.model)
    for layer in manifest["layers"]:
        grey = np.full((3, 48, 48, 3), 128, "uint8")
        baseline = FilterRenderer(model, layer["name"], config.render, "caffe").activation(grey, [0, 1, 2])
        for f, floor in zip(layer["filters"], baseline):
            pixels = np.asarray(Image.open(config.out / f["image"]))
            assert pixels.std() > 5, f"{layer['name']} filter {f['index']} is blank"
            # The saved 8-bit tile excites its filter more than a plain grey image does.
            assert f["activation"] > floor, (layer["name"], f, floor)
    sheets = manifest["photos"][0]["features"]
    assert [s["layer"] for s in sheets] == ["block1_conv1", "block5_conv3"]
    assert [s["channels"] for s in sheets] == [64, 512]
    assert "no classifier head" in (config.out / manifest["photos"][0]["page"]).read_text()


@pytest.fixture(scope="module")
def efficientnet():
    return load_model(str(SHARED_MODELS / "efficientnet_lite0_imagenet.keras"))


@pytest.fixture(scope="module")
def samples():
    from gallery.imaging import resize
    from gallery.photos.sources import load_photos

    return {p.name: resize(p.pixels, 224, 224) for p in load_photos([SHARED_SAMPLES])}


def test_efficientnet_cams_match_the_closed_form_of_its_gap_dense_head(efficientnet, samples):
    """top_activation → GAP → Dense(softmax): CAM is ReLU(A·W_c) by definition;
    ∂logit_c/∂A_ij^k = W_kc/(hw), so Grad-CAM is the same map and Grad-CAM++ weighs channel k by hw·ReLU(g_k)/(2 + S_k g_k)."""
    from keras import ops

    from gallery import feature_maps, grad_cam

    w = ops.convert_to_numpy(efficientnet.get_layer("predictions").kernel).astype("float64")
    photo = samples["cat"]
    a = feature_maps(efficientnet, photo, "top_activation").astype("float64")  # (7, 7, 1280)
    hw = a.shape[0] * a.shape[1]
    c = 285  # Egyptian cat
    g = w[:, c] / hw
    for method, weights in (("cam", w[:, c]), ("gradcam", g), ("gradcam++", np.where(g != 0, hw * np.maximum(g, 0) / (2 + a.sum((0, 1)) * g), 0))):
        expected = np.maximum(a @ weights, 0)
        expected = np.asarray(Image.fromarray((expected / expected.max()).astype("float32"), "F").resize((224, 224), Image.BILINEAR))
        ours = grad_cam(efficientnet, photo, c, method=method)
        np.testing.assert_allclose(ours, expected / expected.max(), atol=2e-3, err_msg=method)


def _kept(photo, heat, keep_top: bool, fraction=0.25):
    """The photo with only the fraction of pixels the map ranks highest (or lowest); the rest blurred."""
    from PIL import ImageFilter

    order = np.argsort(heat.ravel())
    n = int(fraction * heat.size)
    keep = np.zeros(heat.size, bool)
    keep[order[-n:] if keep_top else order[:n]] = True
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(12)))
    return np.where(keep.reshape(heat.shape)[..., None], photo, blurred)


@pytest.mark.parametrize("method,names", [
    ("gradcam", None), ("gradcam++", None), ("layercam", None), ("cam", None),
    ("scorecam", ("cat", "camera", "coffee")),  # 1,280 masked forwards per photo: a subset keeps CI quick
    ("saliency", None), ("guided-gradcam", None),
    ("smoothgrad", ("cat", "camera", "coffee")),  # 50 backward passes per photo and class
])
def test_cams_are_faithful_keeping_their_top_pixels_keeps_the_class(efficientnet, samples, method, names):
    """Keep the quarter of the pixels a map ranks highest, or the quarter it ranks lowest:
    the class probability must survive far better in the first case."""
    from gallery.photos.activations import Activations
    from gallery.photos.explain import explainer

    predict = Activations(efficientnet, []).predictions
    engine = explainer(efficientnet, None, method)
    top, bottom = [], []
    for name, photo in samples.items():
        if names and name not in names:
            continue
        c = int(predict(photo).argmax())
        heat = engine(photo, [c])[0]
        top.append(predict(_kept(photo, heat, True))[c])
        bottom.append(predict(_kept(photo, heat, False))[c])
    top, bottom = np.asarray(top), np.asarray(bottom)
    assert top.mean() > 5 * bottom.mean(), (top, bottom)
    assert (top > bottom).mean() >= 0.6, (top, bottom)


def _saved_tile_peaks(model, layer, filters, settings):
    """``(peaks, recorded)``: each tile's strongest unit, scored from its saved PNG by the
    tests' own path, and the activation the renderer recorded for it."""
    from gallery.imaging import encode_png

    from ..tile_scores import Scorer, decode

    tiles, recorded = FilterRenderer(model, layer, settings, "caffe").render(filters)
    saved = np.stack([decode(encode_png(tile)) for tile in tiles])
    scorer = Scorer(model, layer)
    np.testing.assert_allclose(scorer.plain(saved, filters), recorded, rtol=1e-3, atol=1e-2)
    return scorer.peak(saved, filters), scorer


@pytest.mark.parametrize("layer", ["block3_conv1", "block4_conv2", "block5_conv3"])
def test_vgg16_tiles_excite_their_filter_more_than_any_photo(layer, samples):
    """Faithfulness: each saved 8-bit tile drives its filter's strongest unit above the
    strongest unit of any sample photo. Peak against peak: at block5 the photos' *mean*
    pre-activations are all negative, so a bar on means would pass noise."""
    model = load_model(str(SHARED_MODELS / "vgg16_hed_notop.keras"))
    filters = [0, 1, 2, 3]
    photos = np.stack(list(samples.values()))
    peaks, scorer = _saved_tile_peaks(model, layer, filters, RenderSettings(size=96, batch=4))
    best = np.array([scorer.peak(photos, [f] * len(photos)).max() for f in filters])
    assert (peaks > best).all(), (layer, peaks, best)
    if layer == "block5_conv3":
        # The bar must reject what an optimizer that does nothing publishes: its noise.
        idle, _ = _saved_tile_peaks(model, layer, filters, RenderSettings(size=96, steps=8, batch=4,
                                                                            learning_rate=0.0))
        assert not (idle > best).all(), (idle, best)
