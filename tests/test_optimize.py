import numpy as np
import pytest

from gallery import visualize_filters
from gallery.config import RenderSettings
from gallery.optimize import FilterRenderer

from .conftest import tiny_backbone, tiny_classifier


@pytest.mark.parametrize("param,transforms", [("fourier", "standard"), ("pixel", "none")])
def test_objective_rises_over_steps(param, transforms):
    model = tiny_classifier()
    reached = [
        FilterRenderer(model, "conv2", RenderSettings(size=16, steps=steps, parameterization=param,
                                                       transforms=transforms)).render([0, 1, 2, 3, 4])[1]
        for steps in (1, 30)
    ]
    assert np.all(reached[1] > reached[0] + 0.05), reached


def test_images_are_uint8_of_the_requested_size_and_seeded():
    model = tiny_backbone()
    a = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=4)
    b = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=4)
    c = visualize_filters(model, "sep", [0, 2], size=20, steps=3, seed=5)
    assert a.dtype == np.uint8 and a.shape == (2, 20, 20, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_filter_image_does_not_depend_on_its_batch():
    model = tiny_classifier()
    together = visualize_filters(model, "conv1", [1, 3, 5], size=16, steps=4, batch=3)
    alone = visualize_filters(model, "conv1", [3], size=16, steps=4, batch=1)
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1


def test_dead_filters_still_get_a_picture():
    """A filter whose ReLU output is zero everywhere still rises through its pre-activation."""
    model = tiny_classifier()
    conv = model.get_layer("conv2")
    bias = conv.bias.numpy()
    bias[0] = -50.0  # dead on every input in [0, 255]
    conv.bias.assign(bias)
    renderer = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=25, transforms="none"))
    _, start = FilterRenderer(model, "conv2", RenderSettings(size=16, steps=1, transforms="none")).render([0])
    images, end = renderer.render([0])
    assert end[0] > start[0] + 0.05
    assert images[0].std() > 1.0  # not a blank tile


def test_nested_layers_and_depthwise_render():
    from .conftest import tiny_transfer

    model = tiny_transfer()
    out = visualize_filters(model, "inner/dw", [0, 7], size=16, steps=2)
    assert out.shape == (2, 16, 16, 3)


def test_out_of_range_filter_is_refused():
    renderer = FilterRenderer(tiny_classifier(), "conv1", RenderSettings(size=16, steps=1))
    with pytest.raises(IndexError, match="out of range"):
        renderer.render([6])
