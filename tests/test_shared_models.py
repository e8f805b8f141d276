"""Integration on real trained weights from ../shared (skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gallery import load_model, pipeline
from gallery.optimize import FilterRenderer
from gallery.config import BuildConfig, RenderSettings

from .conftest import SHARED_MODELS, SHARED_SAMPLES, needs_shared
from .test_build import check_site

pytestmark = [needs_shared(), pytest.mark.shared]


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
