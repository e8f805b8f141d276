import numpy as np
from keras import ops

from gallery.render import transforms


def _run(fn, x):
    return ops.convert_to_numpy(fn(ops.convert_to_tensor(x)))


def test_pad_adds_grey_border():
    x = np.zeros((1, 4, 4, 3), "float32")
    y = _run(transforms.pad(2), x)
    assert y.shape == (1, 8, 8, 3)
    assert np.all(y[:, :2] == 0.5) and np.all(y[:, 2:6, 2:6] == 0)


def test_integer_jitter_is_an_exact_shift():
    rng = np.random.default_rng(3)
    x = rng.random((1, 10, 10, 3)).astype("float32")
    m = transforms.jitter(2)(np.random.default_rng(0), 10)
    dx, dy = int(m[0, 2]), int(m[1, 2])
    y = _run(transforms.warp(ops.convert_to_tensor(m[None].astype("float32"))), x)
    # Output pixel (r, c) reads input pixel (r + dy, c + dx) wherever that is inside.
    for r in range(10):
        for c in range(10):
            if 0 <= r + dy < 10 and 0 <= c + dx < 10:
                np.testing.assert_allclose(y[0, r, c], x[0, r + dy, c + dx], atol=1e-6)
            else:
                np.testing.assert_allclose(y[0, r, c], 0.5)


def test_composed_matrices_equal_sequential_warps():
    """Two integer shifts warped one after the other equal one warp by M1·M2."""
    x = np.random.default_rng(1).random((1, 12, 12, 3)).astype("float32")
    m1 = np.array([[1, 0, 1], [0, 1, -2], [0, 0, 1]], "float32")
    m2 = np.array([[1, 0, 2], [0, 1, 1], [0, 0, 1]], "float32")
    sequential = _run(transforms.compose([transforms.warp(ops.convert_to_tensor(m1[None])),
                                          transforms.warp(ops.convert_to_tensor(m2[None]))]), x)
    combined = _run(transforms.warp(ops.convert_to_tensor((m1 @ m2)[None])), x)
    inside = np.s_[:, 3:-3, 3:-3]  # away from the fill, both are exact
    np.testing.assert_allclose(sequential[inside], combined[inside], atol=1e-6)


def test_rotation_and_scale_fix_the_centre():
    for sampler in (transforms.rotate([30]), transforms.scale([1.2])):
        m = sampler(np.random.default_rng(0), 9)
        centre = np.array([4.0, 4.0, 1.0])
        np.testing.assert_allclose(m @ centre, centre, atol=1e-9)


def test_rotation_matrix_closed_form():
    m = transforms.rotate([90])(np.random.default_rng(0), 1)  # size 1: centre at origin
    np.testing.assert_allclose(m, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_sample_matrices_are_seeded():
    samplers = transforms.standard_geometric()
    a = transforms.sample_matrices(samplers, np.random.default_rng(7), 5, 32)
    b = transforms.sample_matrices(samplers, np.random.default_rng(7), 5, 32)
    assert a.shape == (5, 3, 3)
    np.testing.assert_array_equal(a, b)


def test_standard_is_lucid_cropped_to_the_tile():
    """The same draws warp the padded canvas and the bare tile alike, inside the tile."""
    size, p = 16, transforms.PAD
    x = np.random.default_rng(2).random((1, size, size, 3)).astype("float32")
    samplers = transforms.standard_geometric()
    padded = transforms.sample_matrices(samplers, np.random.default_rng(5), 1, size + 2 * p)
    bare = transforms.sample_matrices(samplers, np.random.default_rng(5), 1, size)
    lucid = _run(transforms.step_transform(p, ops.convert_to_tensor(padded)), x)
    ours = _run(transforms.step_transform(0, ops.convert_to_tensor(bare)), x)
    np.testing.assert_allclose(lucid[:, p:-p, p:-p], ours, atol=1e-5)


def test_resampled_matrices_scale_shifts_and_keep_the_centre():
    shift = np.array([[[1, 0, 4], [0, 1, -2], [0, 0, 1]]], "float32")
    half = transforms.resample_matrices(shift, 16, 8)
    np.testing.assert_allclose(half[0], [[1, 0, 2], [0, 1, -1], [0, 0, 1]], atol=1e-6)
    turn = transforms.rotate([25])(np.random.default_rng(0), 16)[None]
    small = transforms.resample_matrices(turn, 16, 10)[0]
    np.testing.assert_allclose(small @ [4.5, 4.5, 1.0], [4.5, 4.5, 1.0], atol=1e-5)
    np.testing.assert_allclose(small[:2, :2], turn[0, :2, :2], atol=1e-6)


def test_resize_keeps_constants_and_reaches_every_pixel():
    from gallery.model import grad

    x = np.full((1, 12, 12, 3), 0.3, "float32")
    np.testing.assert_allclose(_run(transforms.resize(5), x), 0.3, atol=1e-6)
    (_, _), g = grad.value_and_grad(lambda t: (ops.sum(transforms.resize(5)(t)), 0.0))(ops.convert_to_tensor(x))
    assert np.all(ops.convert_to_numpy(g) > 0)  # plain bilinear sampling would skip most pixels
