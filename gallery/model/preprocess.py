"""Input preprocessing by name, in ``keras.ops`` so it runs inside compiled steps.

Every function maps RGB pixels in ``[0, 255]`` (float, channels last) to what the
model expects. The conventions are those of ``keras.applications``:

* ``caffe``: RGB→BGR, then subtract the ImageNet BGR means (VGG, ResNet v1);
* ``tf``: scale to ``[-1, 1]`` (MobileNet, Inception, Xception);
* ``torch``: scale to ``[0, 1]``, then standardise with the ImageNet means and stds;
* ``none``: the model rescales itself (EfficientNet, ConvNeXt).
"""

from __future__ import annotations

from typing import Callable

from keras import ops

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


def resolve(preprocess) -> Callable:
    """A name from :data:`NAMES`, a callable, or ``None`` (meaning ``none``)."""
    if preprocess is None:
        return none
    if callable(preprocess):
        return preprocess
    if isinstance(preprocess, str) and preprocess.lower() in NAMES:
        return NAMES[preprocess.lower()]
    raise GalleryError(
        f"preprocess must be one of {', '.join(NAMES)} or a callable, got {preprocess!r}"
    )

