"""Tiny seeded conv models (8×8×3 inputs) and fixtures shared by the tests."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest_plugins = ("tests.fail_fast",)  # a hung test stops at its limit; a failure report pytest can always write

# Every process of the suite computes with this many threads, before the backend starts:
# oneDNN splits some sums by thread count (with AVX2), and the tests compare the bytes of
# builds made in this process with those of Ray workers given as many threads, whatever
# the machine's core count.
THREADS = 2
from gallery.model import grad  # noqa: E402 - after the constant it reads

grad.limit_threads(THREADS)

ROOT = Path(__file__).resolve().parents[1]  # the checkout: build.py, pyproject.toml, README.md
SHARED = ROOT.parent / "shared"
DATA = ROOT / "tests" / "data"  # fixtures the tests keep: a parsed-options record, a real manifest
SHARED_MODELS = SHARED / "models"
SHARED_SAMPLES = SHARED / "samples"


# Skips a run may show, by reason. Under CI (CI=true), any other skip fails the test: a
# browser that could not be installed, or fixtures that are missing, must not pass quietly.
EXPECTED_SKIPS = (
    "only JAX compiles ahead",  # the TensorFlow run of the JAX-only compile-ahead tests
    "torch is not installed",  # a several-GB download, kept out of the test extra
    "only TensorFlow traces scopes",  # the JAX re-run of a TensorFlow-only check
    "the machine is online",  # the offline-weights check, on a connected machine
    "this backend has no bf16 convolution here",
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() == "true":
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(expected in reason for expected in EXPECTED_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI, where it must run: {reason}"


def pytest_unconfigure(config):
    """A Ray left running (a test that failed before its finalizer, or pytest's own error)
    would keep this process from exiting: stop it, whatever ended the run."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _keras():
    import keras

    keras.utils.set_random_seed(1234)
    return keras


def tiny_classifier(classes: int = 4, softmax: bool = True, name: str = "tiny"):
    """conv(relu) → conv(relu) → GAP → Dense: a known closed form for Grad-CAM."""
    keras = _keras()
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_channel_classifier(side: int = 8, channels: int = 1):
    """conv → pool → conv → GAP → softmax for ``side``² images of ``channels`` channels (grey,
    multispectral); unnamed, so Keras calls it 'functional'."""
    keras = _keras()
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


def tiny_backbone(name: str = "backbone"):
    """Any-size input, no head: filters and feature maps only."""
    keras = _keras()
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(3, 3, padding="same", activation="relu", name="sep")(x)
    return keras.Model(inputs, x, name=name)


def tiny_transfer():
    """A classifier that wraps a whole backbone model, as transfer learning does."""
    keras = _keras()
    backbone = tiny_backbone("inner")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="transfer")


@pytest.fixture
def classifier():
    return tiny_classifier()


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.fixture
def photo_dir(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, shape in (("red fox", (24, 32, 3)), ("b<o>at", (16, 16, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def classifier_file(tmp_path):
    """The tiny classifier, saved as a .keras file."""
    path = tmp_path / "tiny.keras"
    tiny_classifier().save(path)
    return path


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n<script>alert(1)</script>\nfish\n", encoding="utf-8")
    return path


def needs_shared():
    return pytest.mark.skipif(not SHARED_MODELS.is_dir(), reason=f"offline fixtures not found at {SHARED}")


def online(host: str = "storage.googleapis.com") -> bool:
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def setup(tmp_path):
    """A saved tiny classifier and a folder with one photo: ``(tmp_path, model, photos)``."""
    model = tmp_path / "tiny.keras"
    tiny_classifier().save(model)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(photos / "a.png")
    return tmp_path, model, photos
