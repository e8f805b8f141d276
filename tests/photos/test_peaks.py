"""One statistic on both sides: a filter image's peak is the figure its top photos show.

A photo's peak (gallery.photos.examples.peaks) is the strongest unit of the conv layer's
output, its own activation applied; a tile records the same figure from its saved PNG.
"""

from __future__ import annotations

import html
import json

import keras
import numpy as np
import pytest
from PIL import Image

from gallery import load_model
from gallery.orchestrate import pipeline
from gallery.orchestrate.cache import Cache
from gallery.config import BuildConfig, RenderSettings
from gallery.render.optimize import FilterRenderer
from gallery.site.pages import sig

from ..conftest import SHARED_MODELS, needs_shared, tiny_classifier
from ..helpers.builds import build_config

pytestmark = pytest.mark.slow  # every test builds a whole gallery


def _records(cache_dir) -> dict:
    """``{key: record}`` of every filter image in the cache."""
    found = {}
    for path in (cache_dir / "objects").rglob("*.json"):
        record = json.loads(path.read_text())
        if record["about"].get("kind") == "filter":
            found[path.stem] = record
    return found


def _layer_output(model, layer: str):
    """The layer's output (its activation applied) on any-size images, through a graph of
    the tests' own built from the model's layers: independent of the gallery's code."""
    inputs = keras.Input((None, None, 3))
    x = inputs
    for name in ("conv1", "conv2")[: ("conv1", "conv2").index(layer) + 1]:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x)


def test_tiles_record_the_peak_photos_are_ranked_by(tmp_path, photo_dir):
    model = tiny_classifier()
    conv = model.get_layer("conv2")
    conv.bias.assign(np.where(np.arange(5) == 1, -1e4, conv.bias.numpy()))  # filter 1: below zero everywhere
    model.save(tmp_path / "tiny.keras")
    config = build_config(tmp_path, tmp_path / "tiny.keras", images=(photo_dir,),
                     render=RenderSettings(size=16, steps=8, batch=4))
    manifest = pipeline.build(config)
    records = _records(config.cache)
    assert len(records) == 11
    metas = {(config.cache / "objects" / key[:2] / f"{key}.bin").read_bytes(): record["meta"]
             for key, record in records.items()}
    for layer in manifest["layers"]:
        output = _layer_output(model, layer["name"])
        for f in layer["filters"]:
            png = config.out / f["image"]
            pixels = np.asarray(Image.open(png).convert("RGB"), dtype="float32")[None]
            expected = float(np.max(keras.ops.convert_to_numpy(output(pixels))[0, :, :, f["index"]]))
            assert png.read_bytes() in metas
            assert f["peak"] == pytest.approx(expected, rel=1e-5, abs=1e-4), (png, f["peak"], expected)
    dead = manifest["layers"][1]["filters"][1]
    assert dead["activation"] < -9000 and dead["peak"] == 0.0  # after its ReLU, as the photos' peaks are

    f = manifest["layers"][1]["filters"][2]
    page = html.unescape((config.out / f["page"]).read_text())
    assert f"Peak {sig(f['peak'])}: its strongest unit's output after its ReLU" in page
    assert "Each photo's peak is its strongest unit's output after its ReLU" in page
    assert f"peak {sig(f['top'][0]['peak'])}</span>" in page  # the photos, in the same words and units
    assert "Reaches a mean pre-activation" not in page


def test_old_tiles_get_their_peak_from_their_pixels_without_rendering(tmp_path, classifier_file, monkeypatch, capsys):
    config = build_config(tmp_path, classifier_file)
    first = pipeline.build(config)
    cache = Cache(config.cache)
    payloads = {}
    for key, record in _records(config.cache).items():  # as a build before peaks left them
        data_path = config.cache / "objects" / key[:2] / f"{key}.bin"
        payloads[key] = data_path.stat().st_mtime_ns
        cache._write_record(key, data_path.read_bytes(), {"activation": record["meta"]["activation"]},
                            record["about"], record["created"])
    calls = []
    scores = FilterRenderer.scores
    monkeypatch.setattr(FilterRenderer, "scores", lambda self, images, indices: calls.append(len(images))
                        or scores(self, images, indices))
    monkeypatch.setattr(FilterRenderer, "images", lambda *a, **k: pytest.fail("a cached tile was rendered again"))
    capsys.readouterr()
    second = pipeline.build(config)
    err = capsys.readouterr().err
    assert "11 cached filter images scored from their saved pixels" in err and "0 tiles computed" in err, err
    assert calls == [4, 4, 2, 1]  # one batched pass per unit: conv1 0-3, conv2 0-3 (first looks), conv1 4-5, conv2 4
    peaks = [[f["peak"] for f in layer["filters"]] for layer in second["layers"]]
    assert peaks == [[f["peak"] for f in layer["filters"]] for layer in first["layers"]]
    for key, record in _records(config.cache).items():  # kept in the records, payloads untouched
        assert isinstance(record["meta"]["peak"], float)
        assert (config.cache / "objects" / key[:2] / f"{key}.bin").stat().st_mtime_ns == payloads[key]
    pipeline.build(config)
    assert "scored from their saved pixels" not in capsys.readouterr().err and len(calls) == 4


@needs_shared()
def test_the_recorded_peak_is_the_tests_own_on_the_saved_png(tmp_path):
    """VGG16: the record's peak is tests/tile_scores.py's strongest unit of the saved PNG,
    after the layer's ReLU, as photos are measured."""
    from ..tile_scores import Scorer, decode

    config = BuildConfig(model=str(SHARED_MODELS / "vgg16_hed_notop.keras"), preprocess="caffe",
                         layers=("block3_conv1",), filters=slice(0, 4), render=RenderSettings(size=48, steps=8),
                         images=(), out=tmp_path / "site", cache=tmp_path / "cache", photo_pages=0)
    manifest = pipeline.build(config)
    filters = manifest["layers"][0]["filters"]
    saved = np.stack([decode((config.out / f["image"]).read_bytes()) for f in filters])
    scorer = Scorer(load_model(config.model), "block3_conv1")
    expected = np.maximum(scorer.peak(saved, [f["index"] for f in filters]), 0)
    np.testing.assert_allclose([f["peak"] for f in filters], expected, rtol=1e-4)
