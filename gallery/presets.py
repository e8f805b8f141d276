"""Named quality/speed trade-offs, with defaults for CPUs and for GPUs.

A preset fills in whatever settings the user did not give; what every preset shares (the
Fourier parameterization, Adam's step, the spectrum's slope, the contrast bound that keeps
tiles from posterizing) is in :class:`gallery.config.RenderSettings`. CPUs step at full size
throughout: at the default step size, tuned on VGG16-HED block3_conv1 and block5_conv3
at 128 px, full-size steps reached a given activation sooner than half of them at half
size did. GPUs get larger tiles and more steps
because they can afford them, keep the coarse-to-fine schedule (not yet measured against
full size there), and run the loop in bf16 on their tensor cores.
Costs on reference machines are in the README.
"""

from __future__ import annotations

from .config import FULL, HALF_THEN_FULL
from .errors import GalleryError

BF16 = "bfloat16"  # GPUs: tensor cores; tiles are still scored in float32

PRESETS: dict[str, dict[str, dict]] = {
    "preview": {
        "cpu": {"size": 96, "steps": 24, "scales": FULL, "batch": 16},
        "gpu": {"size": 128, "steps": 128, "scales": HALF_THEN_FULL, "batch": 128, "precision": BF16},
    },
    "default": {
        "cpu": {"size": 128, "steps": 64, "scales": FULL, "batch": 16},
        "gpu": {"size": 224, "steps": 512, "scales": HALF_THEN_FULL, "batch": 128, "precision": BF16},
    },
    "high": {
        "cpu": {"size": 224, "steps": 512, "scales": FULL, "batch": 8, "variants": ("negative", "diversity")},
        "gpu": {"size": 224, "steps": 1024, "scales": FULL, "batch": 64, "variants": ("negative", "diversity"),
                "precision": BF16},
    },
}


def preset(name: str, device: str | None) -> dict:
    """The settings of preset ``name`` for ``device`` (``None`` for a CPU)."""
    if name not in PRESETS:
        raise GalleryError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return dict(PRESETS[name]["cpu" if device is None else "gpu"])


def resolve(name: str, device: str | None, given: dict) -> dict:
    """The preset's settings overridden by every value in ``given`` that is not ``None``."""
    return {**preset(name, device), **{k: v for k, v in given.items() if v is not None}}
