import numpy as np
import pytest
from keras import ops

from gallery import feature_maps, GalleryError, grad_cam
from gallery.photos.cams import CamEngine, default_layer

from ..conftest import tiny_backbone, tiny_classifier, tiny_transfer


def _photo(size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _assert_same_map(ours, expected):
    """Our ``[0, 1]`` map equals the closed form scaled by its maximum (all zero stays zero)."""
    if expected.max() == 0:
        assert ours.max() == 0
    else:
        np.testing.assert_allclose(ours, expected / expected.max(), atol=1e-4)


def test_gradcam_matches_the_closed_form_of_a_gap_dense_head():
    """For logits y = W·mean(A) + b, ∂y_c/∂A_ij^k = W_kc / (h·w), so the map is ReLU(A·W_c)."""
    model = tiny_classifier(softmax=False)
    photo = _photo()
    a = feature_maps(model, photo, "conv2")  # (8, 8, 5), the model's input is 8×8
    w = ops.convert_to_numpy(model.get_layer("head").kernel)
    for c in range(4):
        expected = np.maximum(a @ w[:, c], 0)
        ours = grad_cam(model, photo, c, layer="conv2")
        _assert_same_map(ours, expected)


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


def test_gradcam_plus_plus_matches_its_closed_form_on_a_gap_dense_head():
    """With a GAP+Dense head the gradient is the constant g_k = W_kc/(hw) over the map, so
    w_k = Σ_ij g²·ReLU(g) / (2g² + S_k g³) = hw·ReLU(g_k) / (2 + S_k g_k), S_k = Σ_ij A_ij^k."""
    model = tiny_classifier(softmax=False)
    photo = _photo(seed=4)
    a = feature_maps(model, photo, "conv2").astype("float64")
    hw = a.shape[0] * a.shape[1]
    w = ops.convert_to_numpy(model.get_layer("head").kernel).astype("float64")
    for c in range(4):
        g = w[:, c] / hw
        s = a.sum(axis=(0, 1))
        weights = np.where(g != 0, hw * np.maximum(g, 0) / (2 + s * g), 0)
        expected = np.maximum(a @ weights, 0)
        ours = grad_cam(model, photo, c, layer="conv2", method="gradcam++")
        _assert_same_map(ours, expected)


def test_scorecam_matches_masked_forward_passes_done_by_hand():
    """α_k = p_c(X ∘ H_k) − p_c(0), with H_k the min-max scaled channel (here already at input size)."""
    model = tiny_classifier(softmax=True)
    photo = _photo(seed=5)
    a = feature_maps(model, photo, "conv2")
    x = photo.astype("float32")[None]
    baseline = ops.convert_to_numpy(model(np.zeros_like(x)))[0]
    for c in range(4):
        alphas = []
        for k in range(a.shape[-1]):
            m = a[..., k]
            h = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
            alphas.append(ops.convert_to_numpy(model(x * h[None, :, :, None]))[0, c] - baseline[c])
        expected = np.maximum(a @ np.asarray(alphas), 0)
        ours = grad_cam(model, photo, c, layer="conv2", method="scorecam")
        _assert_same_map(ours, expected)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "layercam", "cam"])
def test_a_batch_of_photos_gives_each_photo_its_own_maps(method):
    model = tiny_classifier()
    engine = CamEngine(model, "conv2" if method == "cam" else "conv1", method)  # CAM: the layer GAP pools
    photos = [_photo(seed=s) for s in range(3)] + [np.random.default_rng(9).integers(0, 256, (13, 20, 3), dtype=np.uint8)]
    classes = [[0, 2], [1, 3], [3, 0], [2, 1]]
    maps, shares = engine.explain_batch(photos, classes)
    for photo, wanted, batch_maps, batch_shares in zip(photos, classes, maps, shares):
        alone_maps, alone_shares = engine.explain(photo, wanted)
        assert batch_maps.shape == (2, *photo.shape[:2])
        np.testing.assert_allclose(batch_maps, alone_maps, atol=1e-5)
        np.testing.assert_allclose(batch_shares, alone_shares, rtol=1e-4, atol=1e-6)


def test_many_engines_on_one_model_leave_its_graph_readable():
    """Keras appends call nodes when it isolates the head; later analyses must not see them."""
    from gallery.model import graph

    model = tiny_transfer()
    for method in ("gradcam", "gradcam++", "scorecam", "gradcam"):
        CamEngine(model, None, method)(_photo(), [0])
    assert default_layer(model) == "inner/sep"
    assert graph.conv_source(model, "inner/sep") == "inner/sep"
    model = tiny_classifier()
    for layer in ("conv1", "conv2", "conv1"):
        CamEngine(model, layer)(_photo(), [1])
    assert default_layer(model) == "conv2"


def flat_head_classifier(softmax: bool = False):
    """conv → pool → conv (4×4×3) → flatten → dense: ∂y_c/∂A_ij^k = W[(i, j, k), c] varies over
    space, and the map is 4×4 on an 8×8 photo, so upsampling is not the identity."""
    import keras

    keras.utils.set_random_seed(99)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inputs, outputs)


def _head(model):
    w = ops.convert_to_numpy(model.get_layer("head").kernel).reshape(4, 4, 3, 4)  # (h, w, k, classes)
    return w, ops.convert_to_numpy(model.get_layer("head").bias)


def _closed_form(method, a, w, c):
    """α_k for class c from the flat head's gradient g = W[..., c] (constant in A)."""
    g = w[..., c]
    if method == "gradcam":
        return g.mean(axis=(0, 1))
    g2, g3 = g * g, g ** 3
    denominator = 2 * g2 + a.sum(axis=(0, 1), keepdims=True) * g3
    alpha = g2 / np.where(np.abs(denominator) > 1e-12, denominator, 1e-12)
    return (alpha * np.maximum(g, 0)).sum(axis=(0, 1))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_unnormalised_maps_and_contributions_match_the_closed_form_with_a_spatial_gradient(method):
    model = flat_head_classifier()
    w, _ = _head(model)
    photos = [_photo(seed=s) for s in range(3)]
    engine = CamEngine(model, "c2", method)
    maps, weights, a = engine.raw(photos, [[0, 1, 3]] * 3)
    _, contributions = engine.explain_batch(photos, [[0, 1, 3]] * 3)
    for i in range(3):
        for n, c in enumerate([0, 1, 3]):
            alpha = _closed_form(method, a[i], w, c)
            np.testing.assert_allclose(weights[i, n], alpha, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(maps[i, n], np.maximum(a[i] @ alpha, 0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(contributions[i][n], alpha * a[i].mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)


def _bilinear(a, size):
    """Half-pixel-centred bilinear upsampling of ``(h, w, k)`` maps to ``size × size``, by hand."""
    h = a.shape[0]
    centres = (np.arange(size) + 0.5) * h / size - 0.5
    lo = np.clip(np.floor(centres).astype(int), 0, h - 1)
    hi = np.clip(lo + 1, 0, h - 1)
    frac = np.clip(centres - lo, 0, 1)
    rows = a[lo] * (1 - frac)[:, None, None] + a[hi] * frac[:, None, None]
    return rows[:, lo] * (1 - frac)[None, :, None] + rows[:, hi] * frac[None, :, None]


def test_scorecam_matches_the_closed_form_across_mask_chunks(monkeypatch):
    from gallery.photos import cams

    monkeypatch.setattr(cams, "MASK_BATCH", 2)  # 3 channels: one full chunk and one padded
    model = flat_head_classifier(softmax=True)
    photo = _photo(seed=5)
    maps, weights, a = CamEngine(model, "c2", "scorecam").raw([photo], [[0, 2]])
    x = photo.astype("float32")
    up = _bilinear(a[0], 8)
    low, span = up.min(axis=(0, 1)), up.max(axis=(0, 1)) - up.min(axis=(0, 1))
    masks = np.where(span > 0, (up - low) / np.where(span > 0, span, 1), 0)
    probs = ops.convert_to_numpy(model(np.stack([x * masks[..., k:k + 1] for k in range(3)])))
    baseline = ops.convert_to_numpy(model(np.zeros((1, 8, 8, 3), "float32")))[0]
    for n, c in enumerate([0, 2]):
        alpha = probs[:, c] - baseline[c]
        np.testing.assert_allclose(weights[0, n], alpha, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(maps[0, n], np.maximum(a[0] @ alpha, 0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("softmax", [False, True])
def test_cam_is_exactly_the_dense_weights_on_the_last_maps(softmax):
    """Zhou et al. 2016: M_c = Σ_k W_kc A_k, with the raw weights W_kc themselves (Grad-CAM's
    are W_kc/(h·w) on this head: the same map, another scale)."""
    model = tiny_classifier(softmax=softmax)
    w = ops.convert_to_numpy(model.get_layer("head").kernel)  # (5, 4)
    photos = [_photo(seed=s) for s in range(2)]
    maps, weights, a = CamEngine(model, "conv2", "cam").raw(photos, [[2, 0, 3]] * 2)
    for i in range(2):
        for n, c in enumerate([2, 0, 3]):
            np.testing.assert_allclose(weights[i, n], w[:, c], rtol=1e-6)
            np.testing.assert_allclose(maps[i, n], np.maximum(a[i] @ w[:, c], 0), rtol=1e-5, atol=1e-5)
    _, gradcam_weights, _ = CamEngine(model, "conv2", "gradcam").raw(photos[:1], [[2]])
    np.testing.assert_allclose(gradcam_weights[0, 0] * 64, w[:, 2], rtol=1e-4, atol=1e-6)
    _assert_same_map(grad_cam(model, photos[0], 2, layer="conv2", method="cam"), np.maximum(a[0] @ w[:, 2], 0))


def test_cam_through_a_nested_backbone_and_dropout():
    import keras

    inner = tiny_backbone("inner")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))
    _, weights, _ = CamEngine(model, "inner/sep", "cam").raw([_photo()], [[1]])
    np.testing.assert_allclose(weights[0, 0], ops.convert_to_numpy(model.get_layer("probs").kernel)[:, 1])


def test_cam_refuses_other_heads_and_says_why():
    with pytest.raises(GalleryError, match=r"after it come: MaxPooling2D → Conv2D → Flatten → Dense.*gradcam"):
        CamEngine(flat_head_classifier(), "c1", "cam")
    with pytest.raises(GalleryError, match=r"after it come: Conv2D → GlobalAveragePooling2D → Dense"):
        CamEngine(tiny_classifier(), "conv1", "cam")


def test_layercam_weighs_each_unit_by_its_positive_gradient():
    """LayerCAM: α_ij^k = ReLU(∂y_c/∂A_ij^k) = ReLU(W[(i, j, k), c]) on the flat head, so
    M = ReLU(Σ_k α_ij^k A_ij^k) and channel k's share is mean_ij α_ij^k A_ij^k."""
    model = flat_head_classifier()
    w, _ = _head(model)
    photos = [_photo(seed=s) for s in range(2)]
    engine = CamEngine(model, "c2", "layercam")
    maps, weights, a = engine.raw(photos, [[1, 2]] * 2)
    _, contributions = engine.explain_batch(photos, [[1, 2]] * 2)
    assert weights.shape == (2, 2, 4, 4, 3)
    for i in range(2):
        for n, c in enumerate([1, 2]):
            alpha = np.maximum(w[..., c], 0)
            np.testing.assert_allclose(weights[i, n], alpha, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(maps[i, n], np.maximum((alpha * a[i]).sum(-1), 0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(contributions[i][n], (alpha * a[i]).mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)
