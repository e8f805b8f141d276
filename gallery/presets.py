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

import dataclasses

from .config import FULL, HALF_THEN_FULL, BuildConfig, RenderSettings
from .errors import GalleryError

BF16 = "bfloat16"  # GPUs' tensor cores and CPUs' AMX units; tiles are still scored in float32

# Runs of hundreds of Adam steps grow the finest frequencies: 512 steps at 1/f^1.5 (the
# 64-step runs' slope) left a 2-pixel grating on VGG16-HED block2_conv2 (checker 0.038 half
# then full size, 0.064 at full size, over 4 filters at 224 px; the limit is 0.02). A steeper
# spectrum holds them back (0.010 and 0.006) at 0.94-1.0x the robust activation on VGG16-HED,
# MobileNetV2 and EfficientNet-Lite0 (README, Filter images as pictures). 128 steps keep 1/f^1.5
# (0.014); 1,024 full-size steps at 1/f^1.75 came to 0.019 (and 0.016 at half the step), at
# 1/f^2 to 0.001, with block3_conv1 as strong as 512 steps at 1/f^1.5.
LONG_RUN_DECAY = 1.75
LONGEST_RUN_DECAY = 2.0

# The CPU default's coarse layers and depthwise models (gallery.render.kinds) take settings of
# their own (RenderSettings.KINDS: a wider contrast bound, a shallower slope, a smaller step);
# presets of other lengths and sizes are not measured with them, so every layer takes theirs.
ONE_KIND = {name: None for name in RenderSettings.KINDS}

# Caricatures (gallery.render.caricature) are optimized like tiles, a batch of 8 photos per
# layer: on a CPU, 3 layers of VGG16 cost minutes before the first tile of a first look, so
# the CPU presets draw none unless asked (--caricatures auto); GPUs and the high preset do.
PRESETS: dict[str, dict[str, dict]] = {
    "preview": {
        "cpu": {"size": 96, "steps": 24, "scales": FULL, "batch": 16, "caricatures": (), **ONE_KIND},
        "gpu": {"size": 128, "steps": 128, "scales": HALF_THEN_FULL, "batch": 128, "precision": BF16, **ONE_KIND},
    },
    "default": {
        "cpu": {"size": 128, "steps": 64, "scales": FULL, "batch": 16, "caricatures": ()},
        "gpu": {"size": 224, "steps": 512, "scales": HALF_THEN_FULL, "batch": 128, "precision": BF16,
                "decay": LONG_RUN_DECAY, **ONE_KIND},
    },
    "high": {
        "cpu": {"size": 224, "steps": 512, "scales": FULL, "batch": 8, "variants": ("negative", "diversity"),
                "decay": LONG_RUN_DECAY, **ONE_KIND},
        "gpu": {"size": 224, "steps": 1024, "scales": FULL, "batch": 64, "variants": ("negative", "diversity"),
                "precision": BF16, "decay": LONGEST_RUN_DECAY, **ONE_KIND},
    },
}

# A CPU with bf16 matrix units (Intel AMX, under TensorFlow: grad.cpu_bf16) runs the loop in
# bf16: the same steps, 2.8-3.7x faster on VGG16-HED (README, Presets). Twice the steps in
# about half the float32 time raised the tiles' activation 1.26-1.38x at 128 px, but at 64
# px broke the checker limit on block2_conv2 (0.023) and the corner limit on its grey tiles
# (0.011) (tests/render/test_picture_limits.py), so the steps stay the float32 preset's.
BF16_CPU: dict[str, dict] = {
    "preview": {"precision": BF16},
    "default": {"precision": BF16},
    "high": {"precision": BF16},
}


def preset(name: str, device: str | None, bf16_cpu: bool | None = None) -> dict:
    """The settings of preset ``name`` for ``device`` (``None`` for a CPU); on a CPU,
    ``bf16_cpu`` (default: whether this one has bf16 matrix units) adds :data:`BF16_CPU`."""
    if name not in PRESETS:
        raise GalleryError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    if device is not None:
        return dict(PRESETS[name]["gpu"])
    if bf16_cpu is None:
        from .model.grad import cpu_bf16

        bf16_cpu = cpu_bf16()
    return {**PRESETS[name]["cpu"], **(BF16_CPU[name] if bf16_cpu else {})}


def resolve(name: str, device: str | None, given: dict, bf16_cpu: bool | None = None) -> dict:
    """The preset's settings overridden by every value in ``given`` that is not ``None``."""
    return {**preset(name, device, bf16_cpu), **{k: v for k, v in given.items() if v is not None}}


# A preset key belongs to the build when BuildConfig has a field of that name, and to each
# image (RenderSettings) otherwise: the dataclasses are its one home, as they are for the
# option table, whose fields name them ("variants", "render.size").
_BUILD_FIELDS = frozenset(f.name for f in dataclasses.fields(BuildConfig))
BUILD_KEYS = tuple(sorted({key for devices in PRESETS.values() for settings in devices.values() for key in settings}
                          & _BUILD_FIELDS))  # what a preset sets of the build, not of each image


def render_part(chosen: dict) -> dict:
    """The RenderSettings fields of resolved preset settings: those that are not the build's."""
    return {k: v for k, v in chosen.items() if k not in _BUILD_FIELDS}
