import numpy as np
import pytest
from keras import ops

from gallery import GalleryError, feature_maps, grad_cam
from gallery.cams import CamEngine, default_layer

from .conftest import tiny_backbone, tiny_classifier, tiny_transfer


def _photo(size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_gradcam_matches_the_closed_form_of_a_gap_dense_head():
    """For logits y = W·mean(A) + b, ∂y_c/∂A_ij^k = W_kc / (h·w), so the map is ReLU(A·W_c)."""
    model = tiny_classifier(softmax=False)
    photo = _photo()
    a = feature_maps(model, photo, "conv2")  # (8, 8, 5), the model's input is 8×8
    w = ops.convert_to_numpy(model.get_layer("head").kernel)
    for c in range(4):
        expected = np.maximum(a @ w[:, c], 0)
        ours = grad_cam(model, photo, c, layer="conv2")
        if expected.max() == 0:
            assert ours.max() == 0
            continue
        np.testing.assert_allclose(ours, expected / expected.max(), atol=1e-4)


def test_softmax_models_use_the_logit():
    with_softmax = tiny_classifier(softmax=True)
    logits = tiny_classifier(softmax=False)
    logits.set_weights(with_softmax.get_weights())
    photo = _photo(seed=3)
    for c in range(4):
        np.testing.assert_allclose(grad_cam(with_softmax, photo, c, layer="conv2"),
                                   grad_cam(logits, photo, c, layer="conv2"), atol=1e-5)


def test_maps_come_at_the_photo_size_in_unit_range():
    model = tiny_classifier()
    photo = np.random.default_rng(1).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    maps = CamEngine(model, "conv1")(photo, [0, 1, 2])
    assert maps.shape == (3, 21, 34) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1


def test_gradcam_plus_plus_runs_and_differs_from_gradcam():
    model = tiny_classifier()
    photo = _photo(seed=2)
    plain = CamEngine(model, "conv1", "gradcam")(photo, [0, 1, 2, 3])
    plus = CamEngine(model, "conv1", "gradcam++")(photo, [0, 1, 2, 3])
    assert plus.shape == plain.shape and np.all(plus >= 0)
    assert not np.allclose(plus, plain)


def test_nested_backbone_default_layer_and_map():
    model = tiny_transfer()
    assert default_layer(model) == "inner/sep"
    heat = grad_cam(model, _photo(), 1)
    assert heat.shape == (8, 8)


def test_models_without_a_head_are_refused_clearly():
    with pytest.raises(GalleryError, match="no classifier head"):
        CamEngine(tiny_backbone())


def test_unknown_method_and_class_are_refused():
    with pytest.raises(GalleryError, match="CAM method"):
        CamEngine(tiny_classifier(), method="magic")
    with pytest.raises(GalleryError, match="class index 9"):
        CamEngine(tiny_classifier())(_photo(), [9])
