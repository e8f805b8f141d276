"""Model facts a build works out once (gallery.orchestrate.facts)."""

import pytest

from gallery.config import RenderSettings
from gallery.orchestrate import facts

from ..conftest import tiny_backbone, tiny_channel_classifier, tiny_classifier


@pytest.mark.parametrize("model, asked, size, side", [
    (lambda: tiny_channel_classifier(side=28), 128, 28, 28),  # digits: tiles of the model's own side
    (lambda: tiny_channel_classifier(side=28), 28, 28, 28),  # asked for exactly: still its own side
    (lambda: tiny_channel_classifier(side=28), 16, 16, None),  # smaller than the model's: kept
    (lambda: tiny_channel_classifier(side=64), 128, 128, None),  # from SMALL_INPUT on: kept
    (tiny_classifier, 16, 16, None),  # 8 px, below tiles' least size: kept
    (tiny_backbone, 32, 32, None),  # any size
], ids=["digits", "digits-asked-exactly", "digits-asked-less", "64px", "8px", "any-size"])
def test_small_tiles_decide_the_size_and_the_side_the_pages_say(model, asked, size, side):
    render, tile_side = facts.small_tiles(model(), RenderSettings(size=asked, steps=2))
    assert (render.size, tile_side) == (size, side)
    assert render == RenderSettings(size=size, steps=2)  # nothing else changes
