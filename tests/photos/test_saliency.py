"""Saliency, SmoothGrad and Guided Grad-CAM against gradients written out in numpy.

The models are tiny 8×8×3 convnets with 3×3 "same" convolutions, so a forward pass and
its backward pass fit in a few lines of numpy: ``_conv`` and ``_conv_back`` below.
"""

import threading

import keras
import numpy as np
import pytest
from keras import ops

from gallery import GalleryError, grad_cam
from gallery.imaging import magnitude_image, signed_image
from gallery.model import guided
from gallery.photos.explain import explainer
from gallery.photos.saliency import (SMOOTHGRAD_NOISE, SMOOTHGRAD_SAMPLES, InputGradients, PixelEngine,
                                     smoothgrad_noise)

from ..conftest import tiny_classifier


def _photo(seed=0, shape=(8, 8, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _weights(model, name):
    layer = model.get_layer(name)
    return ops.convert_to_numpy(layer.kernel).astype("float64"), ops.convert_to_numpy(layer.bias).astype("float64")


def _conv(x, kernel, bias):
    """A 3×3 "same" convolution of ``(8, 8, r)`` by ``(3, 3, r, k)``."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    h, w = x.shape[:2]
    return sum(padded[u:u + h, v:v + w] @ kernel[u, v] for u in range(3) for v in range(3)) + bias


def _conv_back(dout, kernel):
    """``∂/∂x`` of ``Σ dout · _conv(x)``: each output unit hands its gradient back to its 3×3 inputs."""
    h, w = dout.shape[:2]
    padded = np.zeros((h + 2, w + 2, kernel.shape[2]))
    for u in range(3):
        for v in range(3):
            padded[u:u + h, v:v + w] += dout @ kernel[u, v].T
    return padded[1:-1, 1:-1]


def _relu_back(dout, z, guide, cap=None):
    """A rectifier's backward rule: plain ``dout · [0 < z < cap]``; guided, also ``· [dout > 0]``."""
    gate = (z > 0) & (z < (np.inf if cap is None else cap))
    return dout * gate * ((dout > 0) if guide else 1)


def _tiny_gradient(model, x, c, guide=False):
    """``∂y_c/∂x`` of conv1(relu) → conv2(relu) → GAP → dense, the logit ``y_c``, by hand."""
    (k1, b1), (k2, b2), (w, _) = (_weights(model, n) for n in ("conv1", "conv2", "head"))
    z1 = _conv(x, k1, b1)
    z2 = _conv(np.maximum(z1, 0), k2, b2)
    d2 = _relu_back(np.broadcast_to(w[:, c] / 64, z2.shape), z2, guide)
    return _conv_back(_relu_back(_conv_back(d2, k2), z1, guide), k1)


def linear_classifier():
    """conv (no activation) → GAP → dense, no softmax: ``y`` is linear in the pixels."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="linear")


def _linear_gradient(model, c):
    k, _ = _weights(model, "conv")
    w, _ = _weights(model, "head")
    return _conv_back(np.broadcast_to(w[:, c] / 64, (8, 8, 4)), k)


def test_saliency_is_the_input_gradient_of_a_linear_model():
    model, photo = linear_classifier(), _photo(1)
    engine = PixelEngine(model, method="saliency")
    found = engine.raw([photo], [[0, 1, 2]])[0]
    maps = engine(photo, [0, 1, 2])
    for c in range(3):
        expected = _linear_gradient(model, c)
        np.testing.assert_allclose(found[c], expected, rtol=1e-4, atol=1e-7)
        magnitude = np.abs(expected).max(axis=-1)
        np.testing.assert_allclose(maps[c], magnitude / magnitude.max(), atol=1e-5)


@pytest.mark.slow
def test_smoothgrad_of_a_linear_model_is_its_saliency():
    model, photo = linear_classifier(), _photo(2)
    plain = PixelEngine(model, method="saliency").raw([photo], [[2, 0]])
    smooth = PixelEngine(model, method="smoothgrad").raw([photo], [[2, 0]])
    np.testing.assert_allclose(smooth, plain, rtol=1e-4, atol=1e-7)


def test_smoothgrad_is_the_mean_gradient_over_the_seeded_noisy_copies():
    model, photo = tiny_classifier(softmax=True), _photo(3) // 2 + 60  # a range of about half the 0–255 scale
    noise = smoothgrad_noise(photo.astype("float32"))
    assert noise.shape == (SMOOTHGRAD_SAMPLES, 8, 8, 3)
    assert abs(noise.std() / (SMOOTHGRAD_NOISE * (photo.max() - photo.min())) - 1) < 0.02
    np.testing.assert_array_equal(noise, smoothgrad_noise(photo.astype("float32")))  # seeded
    found = PixelEngine(model, method="smoothgrad").raw([photo], [[1, 3]])[0]
    copies = photo.astype("float64") + noise
    for i, c in enumerate((1, 3)):
        expected = np.mean([_tiny_gradient(model, x, c) for x in copies], axis=0)
        np.testing.assert_allclose(found[i], expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())
        # The noise matters here: the mean differs from the gradient at the photo itself.
        assert not np.allclose(expected, _tiny_gradient(model, photo.astype("float64"), c), rtol=0.05)


def one_rectifier_model(kind: str):
    """conv → one rectifier of the given kind → GAP → dense (softmax): one guided gate."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((8, 8, 3))
    if kind == "activation":
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    else:
        x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
        x = {"ReLU": keras.layers.ReLU(), "ReLU6": keras.layers.ReLU(max_value=6.0),
             "Activation": keras.layers.Activation("relu")}[kind](x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name=f"one_{kind.lower()}")


@pytest.mark.parametrize("kind,cap", [("activation", None), ("ReLU", None), ("ReLU6", 6.0), ("Activation", None)])
def test_guided_backprop_through_one_rectifier_matches_its_closed_form(kind, cap):
    """``dx = conv_back(d · [0 < z < cap] · [d > 0])`` with ``d = W_kc / 64``: the channels
    whose dense weight is negative pass nothing, where plain backprop passes them."""
    model, photo = one_rectifier_model(kind), _photo(4)
    k, b = _weights(model, "conv")
    w, _ = _weights(model, "head")
    z = _conv(photo.astype("float64"), k, b)
    assert 0.1 < (z > 6).mean() < (z > 0).mean() - 0.01  # ReLU6's cap closes some gates that ReLU leaves open
    engine = PixelEngine(model, method="saliency")
    engine.gradients = InputGradients(model, None, guided_relus=True)  # guided backprop alone
    found = engine.raw([photo], [[0, 1, 2, 3]])[0]
    for c in range(4):
        d = np.broadcast_to(w[:, c] / 64, z.shape)
        expected = _conv_back(_relu_back(d, z, guide=True, cap=cap), k)
        plain = _conv_back(_relu_back(d, z, guide=False, cap=cap), k)
        np.testing.assert_allclose(found[c], expected, rtol=1e-4, atol=1e-6 * np.abs(plain).max())
        assert (w[:, c] < 0).any() and not np.allclose(expected, plain)


def test_guided_gradcam_is_guided_backprop_times_the_gradcam_map():
    """On conv1(relu) → conv2(relu) → GAP → dense, at conv2: Grad-CAM's map is
    ReLU(A · W_c) (8×8, the input's size), and the guided gradient is written out by hand."""
    from gallery import feature_maps

    model, photo = tiny_classifier(softmax=True), _photo(5)
    a = feature_maps(model, photo, "conv2").astype("float64")
    w, _ = _weights(model, "head")
    engine = PixelEngine(model, "conv2", "guided-gradcam")
    found = engine.raw([photo], [[0, 1, 2, 3]])[0]
    maps = engine(photo, [0, 1, 2, 3])
    shown = 0
    for c in range(4):
        cam = np.maximum(a @ w[:, c], 0)
        if cam.max() == 0:  # no evidence for the class at conv2: nothing to guide
            assert not found[c].any() and not maps[c].any()
            continue
        shown += 1
        expected = _tiny_gradient(model, photo.astype("float64"), c, guide=True) * (cam / cam.max())[..., None]
        plain = _tiny_gradient(model, photo.astype("float64"), c) * (cam / cam.max())[..., None]
        np.testing.assert_allclose(found[c], expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())
        assert not np.allclose(expected, plain, rtol=0.05)  # the guided rule changes the image
        magnitude = np.abs(expected).max(axis=-1)
        np.testing.assert_allclose(maps[c], magnitude / magnitude.max(), atol=1e-4)
    assert shown >= 2


def test_the_compiled_gradient_keeps_the_guided_rule_and_the_model_is_left_as_it_was():
    model, photo = tiny_classifier(softmax=True), _photo(6)
    relu = model.get_layer("conv1").activation
    engine = PixelEngine(model, "conv2", "guided-gradcam")
    first = engine.raw([photo], [[2]])
    assert model.get_layer("conv1").activation is relu and model.get_layer("conv2").activation is relu
    again = engine.raw([photo], [[2]])  # no new trace: the compiled function runs as traced
    np.testing.assert_array_equal(again, first)
    # Plain gradients of the same model afterwards are plain: nothing of the rule stayed behind.
    plain = PixelEngine(model, method="saliency").raw([photo], [[2]])[0, 0]
    np.testing.assert_allclose(plain, _tiny_gradient(model, photo.astype("float64"), 2), rtol=1e-3, atol=1e-8)


def test_another_thread_sees_plain_relus_while_a_guided_trace_is_open():
    model, photo = tiny_classifier(softmax=True), _photo(7)
    expected = _tiny_gradient(model, photo.astype("float64"), 1)
    engine = PixelEngine(model, method="saliency")
    inside, done, found = threading.Event(), threading.Event(), []

    def plain_elsewhere():
        inside.wait()
        found.append(engine.raw([photo], [[1]])[0, 0])  # traces while the guided swap is in place
        done.set()

    thread = threading.Thread(target=plain_elsewhere)
    thread.start()
    with guided.guided_relus(model) as swapped:
        assert swapped == 2 and model.get_layer("conv1").activation is not keras.activations.relu
        inside.set()
        assert done.wait(120)
    thread.join()
    np.testing.assert_allclose(found[0], expected, rtol=1e-3, atol=1e-8)
    assert model.get_layer("conv1").activation is keras.activations.relu


def _with_activation(layer):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = layer(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="mixed")


@pytest.mark.parametrize("layer,named", [
    (keras.layers.Conv2D(4, 3, activation="swish", name="c2"), r"silu \(1 layer, such as 'c2'\)"),
    (keras.layers.LeakyReLU(name="leaky"), r"leaky_relu \(1 layer, such as 'leaky'\)"),
    (keras.layers.Activation("sigmoid", name="gate"), r"sigmoid \(1 layer, such as 'gate'\)"),
])
def test_guided_gradcam_refuses_activations_that_are_not_rectifiers_and_names_them(layer, named):
    model = _with_activation(layer)
    with pytest.raises(GalleryError, match=r"model 'mixed' has other activations: " + named):
        explainer(model, None, "guided-gradcam")
    explainer(model, None, "saliency")  # plain gradients need no rule


@pytest.mark.slow
def test_every_method_gives_unit_maps_at_each_photo_size():
    model = tiny_classifier()
    photos = [_photo(8), _photo(9, (13, 21, 3))]
    for method in ("saliency", "smoothgrad", "guided-gradcam"):
        maps, contributions = explainer(model, "conv1", method).explain_batch(photos, [[0, 1], [3, 2]])
        assert [m.shape for m in maps] == [(2, 8, 8), (2, 13, 21)] and contributions == [None, None]
        tops = np.concatenate([m.max(axis=(1, 2)) for m in maps])
        assert all(m.dtype == np.float32 and m.min() >= 0 for m in maps) and set(tops) <= {0, 1} and tops.max() == 1
        single = grad_cam(model, photos[1], 2, layer="conv1", method=method)
        np.testing.assert_allclose(single, maps[1][1], atol=1e-5)
    with pytest.raises(GalleryError, match="method must be one of cam, gradcam, .*, guided-gradcam, got 'lime'"):
        explainer(model, None, "lime")


def test_pictures_are_drawn_as_the_papers_draw_them():
    values = np.linspace(0, 2, 200, dtype="float32").reshape(10, 20)
    grey = magnitude_image(values)
    top = np.percentile(values, 99)
    np.testing.assert_array_equal(grey[..., 0], (np.clip(values / top, 0, 1) * 255 + 0.5).astype("uint8"))
    assert (grey[..., 0] == grey[..., 2]).all() and grey.max() == 255 and grey.min() == 0
    signed = np.random.default_rng(0).normal(0, 3, (6, 7, 3)).astype("float32")
    signed[0, 0] = 0
    image = signed_image(signed)
    np.testing.assert_array_equal(image, (np.clip(0.5 + 0.1 * signed / signed.std(), 0, 1) * 255 + 0.5).astype("uint8"))
    assert tuple(image[0, 0]) == (128, 128, 128)  # zero is mid-grey
