import numpy as np
import pytest
from keras import ops

from gallery.render import params


@pytest.mark.parametrize("h,w", [(8, 8), (7, 10), (16, 9)])
def test_irfft2_matches_numpy(h, w):
    rng = np.random.default_rng(0)
    re = rng.normal(size=(2, 3, h, w // 2 + 1)).astype("float32")
    im = rng.normal(size=(2, 3, h, w // 2 + 1)).astype("float32")
    ours = ops.convert_to_numpy(params.irfft2(ops.convert_to_tensor(re), ops.convert_to_tensor(im),
                                              params.irfft2_bases(h, w)))
    expected = np.fft.irfft2(re + 1j * im, s=(h, w), norm="ortho")
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_spectrum_scale_is_inverse_frequency():
    scale = params.spectrum_scale(8, 8)
    assert scale.shape == (8, 5)
    assert scale[0, 0] == pytest.approx(8.0)  # DC clamps at 1 / max(h, w)
    assert scale[0, 1] == pytest.approx(8.0)  # f = 1/8
    assert scale[0, 4] == pytest.approx(2.0)  # f = 1/2
    assert scale[4, 4] == pytest.approx(1 / np.sqrt(0.5))


@pytest.mark.parametrize("name", ["fourier", "pixel"])
def test_parameterizations_give_bounded_images(name):
    init, image_fn = params.PARAMETERIZATIONS[name](12)
    batch = np.stack([init(np.random.default_rng(i)) * 100 for i in range(3)])
    images = ops.convert_to_numpy(image_fn(ops.convert_to_tensor(batch)))
    assert images.shape == (3, 12, 12, 3)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_init_depends_only_on_its_generator():
    init, _ = params.fourier(10)
    np.testing.assert_array_equal(init(np.random.default_rng(5)), init(np.random.default_rng(5)))
