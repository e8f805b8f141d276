"""Forward passes on photos: feature maps of conv layers and class predictions."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from ..channels import Channels
from ..imaging import resize
from ..model import grad, graph, preprocess as prep

# Every pass over photos runs on batches of exactly this many rows, a short one padded with
# zeros. oneDNN picks its kernel, and so the order of its sums, by the batch's shape: on
# EfficientNet a photo alone and the same photo among seven others differ in their last
# digits (with AVX-512 as with AVX2), so a photo's figures would depend on how many photos
# shared its pass: a resumed build, or a folder that grew, would publish other bytes. At a
# fixed shape a row's result depends on that row alone (neither its slot nor its neighbours).
ROWS = 8


def in_fixed_batches(fn, *arrays):
    """``fn(*chunks)`` over consecutive chunks of exactly :data:`ROWS` rows of ``arrays``
    (the last padded with zero rows), joined and cut back to the rows given, as numpy.

    ``fn`` returns one tensor or a list of them, each with one row per input row.
    """
    count = len(arrays[0])
    if not count:
        raise ValueError("in_fixed_batches needs at least one row")
    pieces = []
    for start in range(0, count, ROWS):
        chunk = [np.asarray(a[start:start + ROWS]) for a in arrays]
        pad = ROWS - len(chunk[0])
        chunk = [np.concatenate([c, np.zeros((pad, *c.shape[1:]), c.dtype)]) if pad else c for c in chunk]
        out = fn(*(ops.convert_to_tensor(c) for c in chunk))
        single = not isinstance(out, (list, tuple))
        pieces.append([ops.convert_to_numpy(o)[:ROWS - pad] for o in ([out] if single else out)])
    joined = [np.concatenate(parts) for parts in zip(*pieces)]
    return joined[0] if single else joined


def input_size(model: keras.Model, fallback: int = 224) -> tuple[int, int]:
    """The model's fixed input height and width, or ``fallback`` for any-size models."""
    shape = model.inputs[0].shape
    h, w = shape[1], shape[2]
    return (int(h) if h else fallback, int(w) if w else fallback)


def input_pixels(model: keras.Model, photos: Sequence[np.ndarray], fallback: int = 224) -> np.ndarray:
    """uint8 photos of any sizes → float32 pixels ``(B, h, w, c)`` in ``[0, 255]`` at the input
    size, in the model's ``c`` channels: RGB photos become their luminance for a grey model
    (:meth:`gallery.channels.Channels.photo`; photos already in its channels pass as they are)."""
    h, w = input_size(model, fallback)
    channels = Channels.of(int(model.inputs[0].shape[-1]))
    return np.stack([resize(channels.photo(photo), h, w) for photo in photos]).astype("float32")


def model_inputs(model: keras.Model, photos: Sequence[np.ndarray], preprocess=None, fallback: int = 224):
    """uint8 photos of any sizes → one preprocessed ``(B, h, w, 3)`` batch at the input size."""
    return prep.resolve(preprocess)(ops.convert_to_tensor(input_pixels(model, photos, fallback)))


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """A model's ``(B, classes)`` outputs as probabilities: softmax applied unless they already are."""
    out = np.asarray(out, dtype="float64")
    if out.min() < 0 or np.any(np.abs(out.sum(axis=-1) - 1.0) > 1e-3):
        out = np.exp(out - out.max(axis=-1, keepdims=True))
        out /= out.sum(axis=-1, keepdims=True)
    return out


class Activations:
    """Runs photos through the model once for many conv layers and the classifier."""

    def __init__(self, model: keras.Model, layers: Sequence[str], preprocess=None, fallback: int = 224):
        self.model = model
        self.preprocess = preprocess
        self.fallback = fallback
        self.paths = [graph.locate(model, name) for name in layers]
        self._outputs = graph.output_fn(model, self.paths) if self.paths else None
        self._run = grad.no_grad(self._outputs) if self._outputs else (lambda x: [])

    def feature_maps(self, photo: np.ndarray) -> dict[str, np.ndarray]:
        """``{layer: float32 (h, w, channels)}`` for one photo."""
        return {name: maps[0] for name, maps in self.feature_maps_batch([photo]).items()}

    def feature_maps_batch(self, photos: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{layer: float32 (B, h, w, channels)}``: one forward pass per :data:`ROWS` photos."""
        if not self.paths:
            return {}
        maps = in_fixed_batches(self._run, model_inputs(self.model, photos, self.preprocess, self.fallback))
        return {p.name: m.astype("float32") for p, m in zip(self.paths, maps)}

    def predictions(self, photo: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax applied if the model outputs logits)."""
        return self.predictions_batch([photo])[0]

    def predictions_batch(self, photos: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, classes)`` probabilities, one forward pass per :data:`ROWS` photos."""
        x = model_inputs(self.model, photos, self.preprocess, self.fallback)
        return as_probabilities(in_fixed_batches(grad.no_grad(lambda t: self.model(t, training=False)), x))


def feature_maps(model, image: np.ndarray, layer: str, *, preprocess=None) -> np.ndarray:
    """The output of ``layer`` on a uint8 RGB photo: float32 ``(h, w, channels)``."""
    return Activations(model, [layer], preprocess).feature_maps(image)[graph.locate(model, layer).name]
