"""Input preprocessing by name, in ``keras.ops`` so it runs inside compiled steps.

Every function maps RGB pixels in ``[0, 255]`` (float, channels last) to what the
model expects. The conventions are those of ``keras.applications``:

* ``caffe``: RGB→BGR, then subtract the ImageNet BGR means (VGG, ResNet v1);
* ``tf``: scale to ``[-1, 1]`` (MobileNet, Inception, Xception);
* ``torch``: scale to ``[0, 1]``, then standardise with the ImageNet means and stds;
* ``none``: the model rescales itself (EfficientNet, ConvNeXt);
* ``mean=m₁,…,std=s₁,…``: scale to ``[0, 1]``, then standardise each channel,
  ``(x / 255 − m_c) / s_c`` (torchvision's ``Normalize``, as models trained on 1-channel or
  multispectral images are): one mean and one std per channel of the model.

``caffe`` and ``torch`` are ImageNet's RGB conventions, so they need a 3-channel model; ``tf``
and ``none`` do not depend on the channels (see :func:`check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from keras import ops

from ..config import PREPROCESS_EXPECTED, standardization
from ..errors import GalleryError

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def caffe(x):
    return x[..., ::-1] - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=x.dtype)


def tf(x):
    return x / 127.5 - 1.0


def torch(x):
    mean = ops.convert_to_tensor(TORCH_MEAN, dtype=x.dtype)
    std = ops.convert_to_tensor(TORCH_STD, dtype=x.dtype)
    return (x / 255.0 - mean) / std


def none(x):
    return x


NAMES: dict[str, Callable] = {"caffe": caffe, "tf": tf, "torch": torch, "none": none}
RGB_ONLY = ("caffe", "torch")  # ImageNet's RGB means (and stds): defined for three channels alone


@dataclass(frozen=True)
class Standardize:
    """``(x / 255 − mean) / std`` per channel: affine in the pixels, as the named conventions are."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x):
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x / 255.0 - mean) / std


def _standardize(text: str) -> Standardize:
    return Standardize(*standardization(text))


def check(preprocess, channels: int, title: str) -> None:
    """Refuse, in one line, a preprocessing that does not fit a ``channels``-channel model."""
    if not isinstance(preprocess, str):
        return
    if preprocess.lower() in RGB_ONLY and channels != 3:
        raise GalleryError(f"--preprocess {preprocess}: ImageNet's RGB convention needs 3 channels, and {title!r} "
                           f"takes {channels}-channel images; use none, tf, or mean=…,std=… with {channels} of each")
    if preprocess.lower() not in NAMES:
        found = _standardize(preprocess)
        if len(found.mean) != channels:
            raise GalleryError(f"--preprocess {preprocess}: expected {channels} mean{'s' * (channels > 1)} and "
                               f"{channels} std{'s' * (channels > 1)}, one per channel of {title!r} "
                               f"({channels}-channel images), got {len(found.mean)}")


def affine(preprocess) -> bool:
    """Whether the preprocessing is known to be affine in the pixels (a callable's is not)."""
    found = resolve(preprocess)
    return found in NAMES.values() or isinstance(found, Standardize)


def resolve(preprocess) -> Callable:
    """A name from :data:`NAMES`, ``mean=…,std=…``, a callable, or ``None`` (meaning ``none``)."""
    if preprocess is None:
        return none
    if callable(preprocess):
        return preprocess
    if isinstance(preprocess, str) and preprocess.lower() in NAMES:
        return NAMES[preprocess.lower()]
    if isinstance(preprocess, str) and preprocess.strip().startswith("mean="):
        return _standardize(preprocess)
    raise GalleryError(f"preprocess must be {PREPROCESS_EXPECTED}, or a callable, got {preprocess!r}")

