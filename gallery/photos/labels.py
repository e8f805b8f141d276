"""Class names: Keras's ImageNet index when available, a user file, or "class N"."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import public_path
from ..errors import GalleryError

IMAGENET_INDEX = "imagenet_class_index.json"


def read_labels(path) -> list[str]:
    """A JSON list of names, a JSON ``{"0": [wnid, name]}`` index, or one name per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"cannot read labels file {str(path)!r}: {exc}") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GalleryError(f"labels file {str(path)!r} is not valid JSON: {exc}") from exc
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return data
        if isinstance(data, dict):
            try:
                return [str(data[str(i)][-1]) for i in range(len(data))]
            except (KeyError, IndexError, TypeError):
                pass
        raise GalleryError(
            f"labels file {str(path)!r} must hold a JSON list of strings or a Keras class index"
        )
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise GalleryError(f"labels file {str(path)!r} is empty")
    return names


def keras_imagenet_labels() -> list[str] | None:
    """Keras's ImageNet class index: from its cache, else fetched by Keras itself if online."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    candidate = home / "models" / IMAGENET_INDEX
    if not candidate.is_file():
        try:  # decode_predictions downloads and caches the index; offline it fails fast
            import numpy as np
            from keras.applications import imagenet_utils

            imagenet_utils.decode_predictions(np.zeros((1, 1000), "float32"), top=1)
        except Exception:
            return None
    try:
        return read_labels(candidate)
    except GalleryError:
        return None


def class_names(num_classes: int, labels_file=None) -> tuple[list[str], str]:
    """``(names, source)`` for a classifier with ``num_classes`` outputs."""
    if labels_file is not None:
        names = read_labels(labels_file)
        if len(names) != num_classes:
            raise GalleryError(
                f"labels file {str(labels_file)!r} has {len(names)} names but the model has "
                f"{num_classes} classes"
            )
        return names, public_path(labels_file)
    if num_classes == 1000:
        names = keras_imagenet_labels()
        if names:
            return names, "Keras ImageNet index"
    return [f"class {i}" for i in range(num_classes)], "none (pass --labels FILE for names)"
