"""The model-parameter randomization check of a map (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018, §3.1, cascading randomization).

A map meant to explain what the model learned must change when what it learned is
destroyed. Copies of the model are made whose top ``1, 2, … k`` conv or dense layers (from
the logits down, cascading: level ``i`` re-initializes the ``i`` layers nearest the output)
hold fresh random weights; each copy explains the same photo and class with the same
method, and each randomized map is compared with the trained one by

* Spearman's rank correlation ``ρ`` of their pixels (Adebayo et al.'s main figure), and
* SSIM (Wang et al., IEEE TIP 2004) of the two maps, each in ``[0, 1]``.

A map whose ranking and structure both survive the destruction of the top layers (``ρ``
and SSIM both at least :data:`FAIL_AT` at the deepest level) fails: what it shows comes
from the photo and the untouched lower layers, not from what the top of the model learned. Guided
Backpropagation is the known failure (its maps are nearly edge detectors); gradients and
Grad-CAM pass.

The user's model is never touched: each level is a clone (``keras.models.clone_model``)
given the trained weights, then its top layers' weights from a seeded numpy generator
(Glorot-uniform kernels, as Keras initialises conv and dense layers, and zero biases),
so every backend and every run draws the same numbers. A layer's random weights depend
on the seed and its place from the top alone, so level ``i + 1`` keeps level ``i``'s
layers as they were and only adds one. Clones, not one model re-assigned level by level:
a compiled JAX function holds the weights it was traced with, so each level needs its
own model for its compiled passes to see its weights.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from ..attribution import FAIL_AT, fails  # noqa: F401 (the check's verdict, Keras-free for the site)
from ..errors import GalleryError
from ..imaging import resize
from ..model import graph
from .activations import input_size
from .explain import explainer

LEVELS = 3  # layers re-initialized at the deepest level, by default
SEED = 0
# How the randomized weights are drawn (random_weights): in every check's cache key, so a
# change of scheme recomputes the checks rather than reusing figures of other weights.
SCHEME = "glorot-uniform/zero-bias/numpy-pcg64"
KINDS = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D,
         keras.layers.Conv3D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def weighted_layers(model: keras.Model) -> list[str]:
    """Qualified names of the conv and dense layers (nested models included), input first."""
    return [name for name, layer in graph.walk(model) if isinstance(layer, KINDS) and layer.weights]


def top_layers(model: keras.Model, levels: int) -> list[str]:
    """The ``levels`` conv or dense layers nearest the output, nearest first."""
    names = weighted_layers(model)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels:
        raise GalleryError(f"randomization levels must be a whole number of at least 1, got {levels!r}")
    if levels > len(names):
        raise GalleryError(f"randomization levels must be at most the model's {len(names)} conv and dense "
                           f"layers, got {levels}")
    return names[::-1][:levels]


def random_weights(shape: tuple, seed: int, place: int, which: int) -> np.ndarray:
    """Glorot-uniform for a kernel (two axes or more), zero for a bias: seeded by the run's
    ``seed``, the layer's ``place`` from the top and the weight's index in the layer."""
    if len(shape) < 2:
        return np.zeros(shape, "float32")
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
    rng = np.random.default_rng([seed, place, which])
    return rng.uniform(-limit, limit, shape).astype("float32")


def randomized_copy(model: keras.Model, levels: int, seed: int = SEED) -> keras.Model:
    """A clone of ``model`` with its top ``levels`` conv and dense layers re-initialized
    (see :func:`random_weights`); ``model`` itself is left exactly as it was."""
    names = top_layers(model, levels)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for place, name in enumerate(names):
        layer = graph.locate(clone, name).layer
        layer.set_weights([random_weights(tuple(w.shape), seed, place, i) for i, w in enumerate(layer.weights)])
    return clone


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ``ρ`` of two maps' pixels, ties ranked by their mean rank. A constant map
    ranks nothing: against a varying one ``ρ`` is 0, and two constant maps are the same (1)."""
    from scipy.stats import rankdata  # scikit-image's own dependency

    x, y = np.asarray(a, "float64").ravel(), np.asarray(b, "float64").ravel()
    flat = [np.ptp(x) == 0, np.ptp(y) == 0]
    if any(flat):
        return 1.0 if all(flat) else 0.0
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``[0, 1]`` maps (scikit-image's, 7×7 windows, or the largest odd window a
    smaller map holds)."""
    from skimage.metrics import structural_similarity

    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(np.asarray(a, "float64"), np.asarray(b, "float64"), data_range=1.0,
                                       win_size=max(window, 3)))


def compare(trained: np.ndarray, randomized: Sequence[np.ndarray], height: int, width: int) -> dict:
    """``{"spearman": [...], "ssim": [...]}``, one per level, of maps brought to ``height × width``."""
    base = resize(np.asarray(trained, "float32"), height, width)
    shrunk = [resize(np.asarray(m, "float32"), height, width) for m in randomized]
    return {"spearman": [spearman(base, m) for m in shrunk], "ssim": [ssim(base, m) for m in shrunk]}


class Copies:
    """The cascading randomized copies of a model, one per level, made once and shared by
    every method checked on them (a build holds ``levels`` copies, whatever its methods).
    ``model`` is only read."""

    def __init__(self, model: keras.Model, levels: int = LEVELS, seed: int = SEED):
        self.layers = top_layers(model, levels)
        self.models = [randomized_copy(model, n, seed) for n in range(1, levels + 1)]


class Randomization:
    """One method's maps under the randomized copies of a model (:class:`Copies`); each copy
    keeps the method's compiled passes, so a build compiles them once per worker."""

    def __init__(self, model: keras.Model, layer: str | None, method: str, preprocess=None, fallback: int = 224,
                 levels: int = LEVELS, seed: int = SEED, explain=explainer, copies: Copies | None = None):
        """``explain(model, layer, method, preprocess, fallback)`` makes a method's engine
        (:func:`~gallery.photos.explain.explainer`; another maker for a method of one's own);
        ``copies``: the model's copies when already made (``levels`` and ``seed`` are theirs)."""
        copies = copies or Copies(model, levels, seed)
        self.layers = copies.layers
        self.size = input_size(model, fallback)
        self.engines = [explain(copy, layer, method, preprocess, fallback) for copy in copies.models]

    def __call__(self, photos: Sequence[np.ndarray], classes: Sequence[int], trained: Sequence[np.ndarray]):
        """For each photo: ``(maps, figures)``: the randomized maps of its class ``classes[i]``
        (one per level, at the photo's size, in ``[0, 1]``) and :func:`compare`'s figures
        against ``trained[i]``, the trained model's map."""
        levels = [engine.explain_batch(photos, [[c] for c in classes])[0] for engine in self.engines]
        out = []
        for i, base in enumerate(trained):
            maps = [found[i][0] for found in levels]
            out.append((maps, compare(base, maps, *self.size)))
        return out
