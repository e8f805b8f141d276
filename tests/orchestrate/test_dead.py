"""Dead means dead: a filter is flagged only when neither its image nor any photo makes it fire."""

from __future__ import annotations

import html
import re

import keras
import numpy as np
import pytest

from gallery.orchestrate import pipeline
from gallery.config import RenderSettings

from ..helpers.builds import build_config

pytestmark = pytest.mark.slow  # builds a whole gallery


def brightness_spots():
    """A layer of brightness, then three filters on it (valid padding, so no border counts):

    0. sparse: a centre-surround kernel (its weights sum to 0) with a bias of −50. Over
       any image its mean pre-activation is the bias plus what the windows' offsets leave,
       at most 255·2/14·(9/8) < 50 on a 16-pixel tile, so it is below zero on every image;
       a bright spot on dark makes it fire (255 − 50);
    1. dead: no weights and a bias of −10⁴, below zero on every image;
    2. plain: the brightness itself, firing everywhere.
    """
    keras.utils.set_random_seed(5)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(1, 1, activation="relu", name="bright")(inputs)
    x = keras.layers.Conv2D(3, 3, padding="valid", activation="relu", name="spots")(x)
    model = keras.Model(inputs, x, name="spots")
    model.get_layer("bright").kernel.assign(np.full((1, 1, 3, 1), 1 / 3, "float32"))
    model.get_layer("bright").bias.assign(np.zeros(1, "float32"))
    kernel = np.zeros((3, 3, 1, 3), "float32")
    kernel[..., 0, 0] = -1 / 8
    kernel[1, 1, 0, 0] = 1
    kernel[1, 1, 0, 2] = 1
    model.get_layer("spots").kernel.assign(kernel)
    model.get_layer("spots").bias.assign(np.array([-50, -1e4, 0], "float32"))
    return model


def test_a_sparse_filter_is_not_dead_and_a_dead_one_is(tmp_path):
    from PIL import Image

    path = tmp_path / "spots.keras"
    brightness_spots().save(path)
    photos = tmp_path / "photos"
    photos.mkdir()
    night = np.zeros((224, 224, 3), "uint8")  # the input size: not resized, so its spots stay sharp
    night[40:42, 60:62] = night[150:152, 100:102] = 255
    Image.fromarray(night).save(photos / "night.png")
    Image.fromarray(np.full((224, 224, 3), 90, "uint8")).save(photos / "fog.png")
    config = build_config(tmp_path, path, images=(photos,), layers=("spots",),
                     render=RenderSettings(size=16, steps=16, batch=4))
    manifest = pipeline.build(config)
    (layer,) = manifest["layers"]
    sparse, dead, plain = layer["filters"]
    # Its own image's mean pre-activation is below zero (the old rule called it dead), yet
    # the night sky's stars make it fire, and nothing in the fog does.
    assert sparse["activation"] < 0 and sparse["top"][0]["peak"] > 100 and sparse["top"][1]["peak"] == 0
    assert not sparse["dead"] and sparse["sparse"] and sparse["fires_on"] == 1
    assert dead["peak"] == 0 and all(t["peak"] == 0 for t in dead["top"])
    assert dead["dead"] and not dead["sparse"] and dead["fires_on"] is None
    assert not plain["dead"] and not plain["sparse"] and plain["activation"] > 0
    assert (layer["dead"], layer["sparse"]) == (1, 1)

    site = config.out

    def text(page):  # what a reader sees: tags and runs of spaces gone
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html.unescape((site / page).read_text())))

    page = text(sparse["page"])
    assert "Sparse:" in page and "Rare: it fires on 1 of the 2 sample photos" in page and "dead" not in page.lower()
    page = text(dead["page"])
    assert "This filter is dead: neither its optimized image nor any of the 2 sample photos makes it fire" in page
    listing = text(layer["page"])
    assert "1 is dead: neither its image nor any sample photo makes it fire" in listing
    assert "1 is sparse" in listing
