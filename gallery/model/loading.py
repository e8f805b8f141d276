"""Loading models by ``keras.applications`` name or file, and knowing their conventions."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import keras

from ..config import readable
from ..errors import GalleryError
from . import graph

# keras.applications constructor name and its preprocessing convention, by lower-case name.
APPLICATIONS: dict[str, tuple[str, str]] = {
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "resnet101v2": ("ResNet101V2", "tf"),
    "resnet152v2": ("ResNet152V2", "tf"),
    "mobilenet": ("MobileNet", "tf"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "mobilenetv3small": ("MobileNetV3Small", "none"),
    "mobilenetv3large": ("MobileNetV3Large", "none"),
    "inceptionv3": ("InceptionV3", "tf"),
    "inceptionresnetv2": ("InceptionResNetV2", "tf"),
    "xception": ("Xception", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    "densenet169": ("DenseNet169", "torch"),
    "densenet201": ("DenseNet201", "torch"),
    "nasnetmobile": ("NASNetMobile", "tf"),
    "nasnetlarge": ("NASNetLarge", "tf"),
    "efficientnetb0": ("EfficientNetB0", "none"),
    "efficientnetb1": ("EfficientNetB1", "none"),
    "efficientnetb2": ("EfficientNetB2", "none"),
    "efficientnetb3": ("EfficientNetB3", "none"),
    "efficientnetv2b0": ("EfficientNetV2B0", "none"),
    "efficientnetv2s": ("EfficientNetV2S", "none"),
    "convnexttiny": ("ConvNeXtTiny", "none"),
    "convnextsmall": ("ConvNeXtSmall", "none"),
}

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_model_file(spec: str) -> bool:
    return str(spec).lower().endswith(MODEL_SUFFIXES) or Path(str(spec)).is_file()


def default_preprocess(spec: str) -> str:
    """The convention a named application expects; model files default to ``none``."""
    entry = _application(str(spec))
    return entry[1] if entry else "none"


def check_spec(spec, weights="imagenet") -> None:
    """Refuse a model that cannot load, from its name and files alone: no Keras work.

    A build checks this before it claims any folder, so a typo costs nothing.
    """
    if isinstance(spec, keras.Model):
        return
    text = str(spec)
    if is_model_file(text):
        path = Path(text)
        if path.is_dir():
            raise GalleryError(f"--model {text!r} is a folder, not a model file; give the .keras or .h5 file itself")
        if not path.is_file():
            raise GalleryError(f"model file {text!r} does not exist")
        damaged = _damaged_archive(path)
        if damaged:
            raise GalleryError(f"model file {text!r} is damaged ({damaged}); save or download the model again")
        return
    if _application(text) is None:
        known = ", ".join(name for name, _ in APPLICATIONS.values())
        raise GalleryError(
            f"model {text!r} is neither a model file (.keras, .h5) nor a keras.applications "
            f"name; known names: {known}"
        )
    if weights not in (None, "imagenet") and not Path(str(weights)).is_file():
        raise GalleryError(f"weights file {str(weights)!r} does not exist")


def application_name(text: str) -> str:
    """The ``keras.applications`` constructor a model name stands for."""
    return _application(text)[0]


def _application(text: str) -> tuple[str, str] | None:
    return APPLICATIONS.get(text.lower().replace("_", "").replace("-", ""))


def load_model(spec, weights="imagenet", *, safe_mode: bool = True) -> keras.Model:
    """Load a ``keras.applications`` model by name, or a ``.keras``/``.h5`` file.

    ``weights`` applies to named models: ``"imagenet"``, a path to a weights file, or
    ``None`` for random initialisation. Offline, with the ImageNet weights not yet in
    Keras's cache, this raises :class:`GalleryError` naming the file Keras wanted.
    """
    if isinstance(spec, keras.Model):
        return spec
    check_spec(spec, weights)
    text = str(spec)
    if is_model_file(text):
        model = _load_file(Path(text), safe_mode)
    else:
        name = _application(text)[0]
        weights = str(weights) if weights not in (None, "imagenet") else weights
        try:
            model = getattr(keras.applications, name)(weights=weights)
        except Exception as exc:  # Keras raises a bare Exception for download failures
            raise _weights_error(name, weights, exc) from exc
    graph.entitle(model, title(spec, model))
    return model


def _load_file(path: Path, safe_mode: bool) -> keras.Model:
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "lambda" in str(exc).lower():
            raise GalleryError(
                f"model file {str(path)!r} holds code (a Lambda layer); Keras's safe mode "
                "refuses to load it. Pass --unsafe if you trust the file"
            ) from exc
        raise GalleryError(f"could not load model file {str(path)!r}: {_brief(exc)}") from exc
    except Exception as exc:
        raise GalleryError(f"could not load {str(path)!r} as a Keras model: {_brief(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise GalleryError(f"{str(path)!r} holds a {type(model).__name__}, not a Keras model")
    return model


def _brief(exc: Exception, limit: int = 400) -> str:
    """Keras's reason on one line, without the arrays it dumps: weights that do not fit
    their layer print the layer's whole current value after "Target variable:"."""
    text = " ".join(re.split(r"Target variable:|value=\[", str(exc))[0].split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _damaged_archive(path: Path) -> str | None:
    """Why a ``.keras`` file (a zip archive) cannot be read, or ``None``.

    Keras reports every unreadable archive as "File not found", which sends people
    looking for a file that is right there.
    """
    if path.suffix.lower() != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"not a readable .keras zip archive: {exc}"
    if bad is not None:
        return f"the archive member {bad!r} is corrupt"
    if "config.json" not in names:
        return "the archive holds no config.json, so it is not a saved Keras model"
    return None


def _weights_error(name: str, weights, exc: Exception) -> GalleryError:
    message = str(exc)
    url = re.search(r"https?://\S+?\.h5", message)
    if weights == "imagenet" and (url or "URL fetch failure" in message):
        wanted = url.group(0) if url else "the ImageNet weights"
        filename = wanted.rsplit("/", 1)[-1]
        cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"
        return GalleryError(
            f"cannot download the ImageNet weights for {name} (no network?). Keras wanted "
            f"{wanted}. Either pass the file with --weights PATH, or copy it to "
            f"{cache / filename} and run again"
        )
    return GalleryError(f"could not build {name} with weights {weights!r}: {message}")


def fingerprint(model: keras.Model) -> str:
    """A digest of the architecture and every weight: tiles are keyed by it.

    Any change to the weights (fine-tuning, another checkpoint) gives new tiles; the
    same weights loaded from a file or by name give the same ones.
    """
    import hashlib

    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    for _, layer in graph.walk(model, containers=True):
        h.update(f"{type(layer).__name__}:{layer.name};".encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        h.update(f"{weight.path}:{value.dtype}:{value.shape};".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def scales_its_inputs(model: keras.Model) -> bool:
    """Whether the model rescales or normalizes its pixels itself (EfficientNet does)."""
    return any(isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)) for _, layer in graph.walk(model))


def input_channels(model: keras.Model) -> int:
    """How many channels the model's images have (the input's last axis)."""
    return int(model.inputs[0].shape[-1])


def title(spec, model: keras.Model) -> str:
    """The model's name on pages: the application name, or the file's stem."""
    if isinstance(spec, keras.Model):
        return model.name
    text = str(spec)
    if is_model_file(text):
        return readable(Path(text).stem)
    return _application(text)[0]


def source(spec, weights="imagenet") -> str:
    """What a model is, as opposed to what it holds: its file, or its name and weights.

    A site keeps one gallery per source, so rebuilding a retrained ``model.keras``
    replaces its gallery, while another folder's ``model.keras`` gets a gallery of its own.
    """
    if isinstance(spec, keras.Model):
        return f"object:{spec.name}"
    text = str(spec)
    if is_model_file(text):
        return f"file:{Path(text).resolve()}"
    if weights not in (None, "imagenet"):
        weights = f"file:{Path(str(weights)).resolve()}"
    return f"application:{_application(text)[0]}:{weights}"


def check_supported(model: keras.Model) -> None:
    """Refuse, with the reason, models the gallery cannot analyse: any number of channels
    will do (see :mod:`gallery.channels`), but it must be known."""
    name = graph.shown_name(model)
    if len(model.inputs) != 1:
        raise GalleryError(f"model {name!r} has {len(model.inputs)} inputs; only single-input models are supported")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise GalleryError(f"model {name!r} takes inputs of shape {shape}; an image model takes (batch, h, w, c)")
    if not shape[-1]:
        raise GalleryError(f"model {name!r} takes inputs of shape {shape}, with any number of channels; "
                           "an image model fixes its channels (the last axis)")
    for layer in model.layers:
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            raise GalleryError(f"layer {layer.name!r} is channels_first; only channels_last models are supported")
