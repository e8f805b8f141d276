"""The CPU default preset's tiles are pictures, not posters: the limits of the pictures
issue on a small real slice (VGG16-HED, 2 filters of each of two layers at 64 px, the
preset's own steps), each tile scored from its saved pixels by the tests' own paths."""

from __future__ import annotations

import numpy as np
import pytest

from gallery import load_model, presets
from gallery.config import RenderSettings
from gallery.render.optimize import FilterRenderer

from . import picture_scores
from .conftest import SHARED_MODELS, SHARED_SAMPLES, needs_shared
from .test_precision import needs_bf16
from .tile_scores import Scorer

pytestmark = [needs_shared(), pytest.mark.shared, pytest.mark.slow]  # full-size models

SIZE = 64
FILTERS = [0, 1]
LIMITS = {"clip": 0.05, "corner": 0.005, "checker": 0.02}  # medians; natural photos: 0.007, 0.001, 0.000
# The CPU default before the contrast bound (Adam 0.2, 1/f^1.5, 64 full-size steps, unbounded).
OLD = {"learning_rate": 0.2, "decay": 1.5, "steps": 64, "contrast": None}


@pytest.fixture(scope="module")
def hed():
    return load_model(str(SHARED_MODELS / "vgg16_hed_notop.keras"))


def _tiles(model, layer, bf16_cpu=False, **override):
    settings = {**presets.preset("default", None, bf16_cpu), "size": SIZE, **override}
    settings.pop("variants", None)
    return FilterRenderer(model, layer, RenderSettings(**settings), "caffe").images(FILTERS)


def broken_limits(model, layer, tiles) -> list[str]:
    """Which limits the tiles break: the picture figures' medians, and faithfulness (each
    live filter's tile beats the strongest sample photo at the same size on the filter's
    robust activation, the same statistic on both sides)."""
    figures = {name: float(np.median(values)) for name, values in picture_scores.figures(tiles).items()}
    broken = [f"{name} {figures[name]:.3f} > {limit}" for name, limit in LIMITS.items() if figures[name] > limit]
    scorer = Scorer(model, layer)
    photos = picture_scores.photos_at(sorted(SHARED_SAMPLES.glob("*.*g")), SIZE)
    robust = scorer.robust(tiles, FILTERS)
    for i, f in enumerate(FILTERS):
        best = scorer.robust(photos, [f] * len(photos)).max()
        live = scorer.peak(tiles[i:i + 1], [f])[0] > 0 or scorer.peak(photos, [f] * len(photos)).max() > 0
        if live and robust[i] <= best:
            broken.append(f"filter {f}: robust {robust[i]:.1f} <= strongest photo's {best:.1f}")
    return broken


@pytest.mark.parametrize("bf16_cpu", [False, pytest.param(True, marks=needs_bf16)], ids=["cpu", "cpu-amx"])
@pytest.mark.parametrize("layer", ["block2_conv2", "block3_conv1"])
def test_the_default_preset_meets_every_picture_limit(hed, layer, bf16_cpu):
    tiles = _tiles(hed, layer, bf16_cpu)
    assert broken_limits(hed, layer, tiles) == []


def test_the_limits_catch_the_posterized_recipe_they_replaced(hed):
    """The same check on the old settings' tiles fails: the limits can fail."""
    broken = broken_limits(hed, "block3_conv1", _tiles(hed, "block3_conv1", **OLD))
    assert any(b.startswith("clip") for b in broken) and any(b.startswith("corner") for b in broken), broken

