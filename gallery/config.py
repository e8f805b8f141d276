"""Frozen settings: the single home of every default the build uses."""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from .attribution import POINTS
from .errors import GalleryError


def default_cache_dir() -> Path:
    """Outside the site, so deleting ``site/`` never throws away optimization work."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnn-gallery"


def readable(text: str) -> str:
    """A local name as text for pages and manifests: bytes of a file name or an argument
    that are not UTF-8 (kept by Python as lone surrogates, which no page can encode)
    become U+FFFD."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def public_path(path) -> str:
    """How a local path appears on published pages.

    Pages are meant to be put online, so they must not reveal the builder's folders
    (``/home/alice/...``, or ``../../home/alice/...``): a path that resolves under the
    working directory is shown relative to it, in its plain form; any other path, absolute
    or relative, by its file name alone.
    """
    text = str(path)
    try:
        return readable(Path(text).resolve().relative_to(Path.cwd().resolve()).as_posix())
    except (ValueError, OSError):
        return f"\u2026/{readable(Path(text).name)}"


def _command_path(flag: str, path: str) -> str:
    """A path in a published command, quoted for the shell: relative to the working
    directory where it lies under it (it runs as shown from there), else its file name
    after a placeholder for the folder that held it (``"$MODEL_DIR"/vgg16.keras``), which
    the page explains; never the machine's own folders."""
    shown = public_path(path)
    if not shown.startswith("\u2026/"):
        return shlex.quote(shown)
    return f'"${flag[2:].upper()}_DIR"/{shlex.quote(Path(path).name)}'


def public_command(argv: list[str]) -> str:
    """The command line of a build, with the values of path flags made public (see
    :func:`_command_path`): pasted where the build ran, with any placeholders set, it runs."""
    from .options import PATH_FLAGS, SEVERAL  # here: the option table reads this module's defaults

    shown, flag = [], None
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if eq:
                shown.append(f"{shlex.quote(name)}={_command_path(name, value)}" if name in PATH_FLAGS
                             else shlex.quote(arg))
            else:
                shown.append(shlex.quote(arg))
            flag = name if name in PATH_FLAGS and not eq else None
        elif flag is not None:
            shown.append(_command_path(flag, arg))
            flag = flag if flag in SEVERAL else None
        else:
            shown.append(shlex.quote(arg))
    return readable(" ".join(["python", "build.py", *shown]))


STEP_TRANSFORMS = ("standard", "lucid", "none")
# Image parameterizations (gallery.render.params): a 1/f^decay spectrum, plain pixels, and
# MACO's phases under natural images' fixed amplitude spectrum.
PARAMETERIZATIONS = ("fourier", "pixel", "maco")
VARIANT_NAMES = ("negative", "diversity", "neuron")  # extra images a filter page can show
DIVERSE_COPIES = 4  # images per filter in the diversity variant
PRECISIONS = ("float32", "bfloat16")  # compute dtypes of the optimization loop
EXECUTORS = ("local", "ray")
DEFAULT_WORKER_CPUS = 4
# Caricatures drawn per paged photo by default, at layers spread over the selection's depth:
# each costs about a filter tile's optimization, twice over (the photo is stepped beside it).
CARICATURE_LAYERS = 3


def worker_threads(worker_cpus: int | None, cpus: int) -> int:
    """CPU threads each computing process uses: a Ray worker, or a local build's own process.

    One rule for every executor, because the bytes depend on it: oneDNN splits a matrix
    product's sums by its thread count (with AVX2, three threads and one give other last
    digits), so only processes computing with as many threads publish the same tiles.
    """
    return max(1, min(worker_cpus or DEFAULT_WORKER_CPUS, cpus))

# A coarse-to-fine schedule: half the steps on the tile shrunk to half its side (a
# quarter of the cost), then half at full size.
HALF_THEN_FULL = (0.5, 1.0)
FULL = (1.0,)


def valid_scales(scales) -> bool:
    """A schedule is fractions of the tile in (0, 1] that ends at full size."""
    return bool(scales) and all(0 < s <= 1 for s in scales) and scales[-1] == 1


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes a filter image (and so is part of its cache key)."""

    size: int = 128
    steps: int = 64
    seed: int = 0
    # Adam's step and the Fourier spectrum's 1/f^decay slope, tuned together on VGG16 at
    # 128 px (bench/filters.py): the steeper slope moves coarse structure further per
    # step and keeps fine detail down, so a larger step converges without noise.
    # Unbounded, the same pair posterized the tiles; ``contrast`` bounds them.
    learning_rate: float = 0.2
    decay: float = 1.5
    # Adam's first-moment decay, beta1 (Kingma & Ba, 2015; 0.9 there and in Lucid).
    momentum: float = 0.9
    parameterization: str = "fourier"  # "fourier" (1/f spectrum, decorrelated colour), "pixel" or "maco"
    transforms: str = "standard"  # "standard" (Lucid's robustness set) or "none"
    batch: int = 16  # images optimized together (halved automatically when memory runs out)
    scales: tuple[float, ...] = FULL  # canvas sizes as fractions of the tile, equal shares of the steps
    precision: str = "float32"  # the loop's compute dtype: "float32" or "bfloat16" (tensor cores)
    # The largest root mean square of an image's colour coordinates before its sigmoid
    # (params.within_contrast); None: unbounded. At 2.5 VGG16-HED block2_conv2's sparse
    # filters already darken blobs to black (corner share 0.017 of 16 tiles); at 2 none
    # (bench/quality.py). Layers linear in the pixels are not bounded: see for_layer.
    contrast: float | None = 2.0
    # The ball's radius for a coarse layer (gallery.render.kinds; None: ``contrast`` there
    # too). At 3 VGG16-HED block3_conv1 to block5_conv3 reach about a third more activation
    # at 64 steps, every picture limit still met (README, Filter images as pictures).
    coarse_contrast: float | None = 3.0
    # The spectrum's slope for a coarse layer (None: ``decay``). Inside the wider ball, 1/f^1.25
    # lets finer structure form within the 64 steps: VGG16-HED block3_conv1 reached a tenth more
    # activation than at 1/f^1.5, every picture limit met (README, Filter images as pictures).
    coarse_decay: float | None = 1.25
    # Adam's step and the slope for the layers of a model with depthwise convolutions (None:
    # ``learning_rate``, ``decay``). MobileNetV2 and EfficientNet-Lite0 are not held back by the
    # ball but by the step: Lucid's 0.05 on a shallower spectrum rose 1.2-1.3x at 64 steps
    # (0.1: a little less on all four fixture layers; README, Filter images as pictures).
    depthwise_lr: float | None = 0.05
    depthwise_decay: float | None = 1.25
    # Adam's beta1 there (None: ``momentum``). A shorter memory of past gradients let their
    # tiles rise 1.06-1.13x further in the same 64 steps (README, Adam's momentum on the depthwise models).
    depthwise_momentum: float | None = 0.5

    # The fields that name a kind of layer (gallery.render.kinds), folded away by for_layer.
    KINDS = ("coarse_contrast", "coarse_decay", "depthwise_lr", "depthwise_decay", "depthwise_momentum")

    def __post_init__(self):
        for name in ("size", "steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise GalleryError(f"{name} must be a positive integer, got {value!r}")
        if self.size < 16:
            raise GalleryError(f"size must be at least 16 pixels, got {self.size}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise GalleryError(f"parameterization must be one of {', '.join(map(repr, PARAMETERIZATIONS))}, "
                               f"got {self.parameterization!r}")
        if self.transforms not in STEP_TRANSFORMS:
            raise GalleryError(f"transforms must be 'standard', 'lucid' or 'none', got {self.transforms!r}")
        if not valid_scales(self.scales):
            raise GalleryError(f"scales must be fractions in (0, 1] ending with 1, got {self.scales!r}")
        for name in ("learning_rate", "decay", "coarse_decay", "depthwise_lr", "depthwise_decay"):
            value = getattr(self, name)
            if value is None and name not in ("learning_rate", "decay"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise GalleryError(f"{name} must be a finite number of at least 0"
                                   f"{'' if name in ('learning_rate', 'decay') else ' or None'}, got {value!r}")
        for name in ("momentum", "depthwise_momentum"):
            value = getattr(self, name)
            if value is None and name != "momentum":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise GalleryError(f"{name} must be a number in [0, 1){'' if name == 'momentum' else ' or None'}, "
                                   f"got {value!r}")
        for name in ("contrast", "coarse_contrast"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise GalleryError(f"{name} must be a positive number or None, got {value!r}")
        if self.precision not in PRECISIONS:
            raise GalleryError(f"precision must be {' or '.join(map(repr, PRECISIONS))}, got {self.precision!r}")

    def for_layer(self, linear: bool, coarse: bool = False, depthwise: bool = False) -> "RenderSettings":
        """The settings a layer renders with, its kind's fields (:data:`KINDS`) folded into
        ``contrast``, ``decay`` and ``learning_rate`` and cleared, so a tile's key names what was used.

        A layer linear in the pixels is not bounded and takes no kind's settings: its tile must
        beat the photos' peak, the strongest single unit, and the patch that drives a linear unit
        hardest is saturated (each weight's sign at full scale), which a ball that spreads its
        budget over the whole tile cannot reach (bench/first_layers.py: at contrast 3, 8 of 15 of
        EfficientNet's stem filters fell short of a photo). A coarse layer
        (:func:`gallery.render.kinds.coarse`) takes ``coarse_contrast`` (where the other layers
        are bounded) and ``coarse_decay``; a layer of a model with depthwise convolutions
        (``depthwise``) takes ``depthwise_lr``, ``depthwise_decay`` and ``depthwise_momentum``; each
        where one is set, the step, slope and momentum on Fourier images alone (where they were measured)."""
        cleared = {name: None for name in self.KINDS}
        if linear:
            return replace(self, contrast=None, **cleared)
        wanted = {"contrast": self.coarse_contrast if coarse and self.contrast is not None else None,
                  "decay": self.coarse_decay if coarse else None}
        if depthwise:
            wanted.update({"learning_rate": self.depthwise_lr, "decay": self.depthwise_decay,
                           "momentum": self.depthwise_momentum})
        if self.parameterization != "fourier":  # measured on Fourier images only: the others keep theirs
            wanted.update({"learning_rate": None, "decay": None, "momentum": None})
        return replace(self, **cleared, **{name: value for name, value in wanted.items() if value is not None})

    def key(self) -> dict:
        """The settings that affect the pixels; ``batch`` does not, so it is left out, and
        nor are the kinds' fields: a tile's settings (:meth:`for_layer`) fold them in."""
        return {
            "size": self.size,
            "steps": self.steps,
            "seed": self.seed,
            "lr": self.learning_rate,
            # Only named when not 0.9, Adam's beta1 before it was a setting, so those tiles stay cached.
            **({"momentum": self.momentum} if self.momentum != 0.9 else {}),
            # Only named when not 1 (Lucid's slope, the only one before it was a setting), and
            # never for MACO, whose spectrum is measured, not a slope.
            **({"decay": self.decay} if self.decay != 1.0 and self.parameterization != "maco" else {}),
            "param": self.parameterization,
            "transforms": self.transforms,
            "scales": list(self.scales),
            # Only named when not float32, so caches built before bf16 existed stay valid.
            **({"precision": self.precision} if self.precision != "float32" else {}),
            **({"contrast": self.contrast} if self.contrast is not None and self.parameterization != "maco" else {}),
        }


@dataclass(frozen=True)
class BuildConfig:
    model: str = "VGG16"
    weights: str | None = "imagenet"
    preprocess: str | None = None  # None: known for named models, "none" for files
    labels: Path | None = None
    layers: tuple[str, ...] | None = None  # None: every conv layer
    filters: slice = field(default_factory=lambda: slice(None))
    render: RenderSettings = field(default_factory=RenderSettings)
    images: tuple[Path, ...] = ()  # empty: the bundled sample photos
    out: Path = Path("site")
    cache: Path = field(default_factory=default_cache_dir)
    cam_layers: tuple[str, ...] | None = None  # None: the last conv layer before the head
    variants: tuple[str, ...] = ()  # extra images per filter: negative, diversity, neuron
    preset: str = "default"
    cam_methods: tuple[str, ...] = ("gradcam",)
    top_k: int = 5
    photo_pages: int | None = 48  # photos that get a page of their own; None: all of them
    examples: int = 8  # top photos shown per filter, ranked over every photo
    photo_size: int = 224  # input side for photos when the model accepts any size
    safe_mode: bool = True
    prune: bool = False  # after the build, drop cache entries it did not use
    command: str = ""  # the command line that produced this build, shown on the pages
    executor: str = "local"  # where units run: "local" (this process) or "ray"
    ray_address: str | None = None  # None: a local Ray started for the build; "auto", HOST:PORT, ray://…
    worker_cpus: int | None = None  # CPUs per Ray worker where the cluster has no GPUs
    trajectory: int = 0  # snapshots of each filter image's optimization, shown on its page (0: none)
    debug: bool = False  # --debug: Ray's and its workers' own lines too
    rgb_channels: tuple[int, int, int] | None = None  # channels shown as RGB (None: the first three)
    # The render settings for a model with depthwise convolutions where they differ (the CPU
    # presets with AMX: bf16 runs VGG16's dense convolutions 2.8-3.7x faster, MobileNetV2's and
    # EfficientNet's depthwise ones 1.5x slower, so those keep the float32 settings).
    render_if_depthwise: RenderSettings | None = None
    # Layers that draw a caricature of each paged photo; None or "auto": CARICATURE_LAYERS spread
    # over the selection. The CLI's CPU presets give () (none): see gallery.presets.
    caricatures: tuple[str, ...] | str | None = None
    curve_points: int = POINTS  # steps of each map's deletion and insertion curves
    randomize: int = 0  # --randomize K: the randomization check over the top K layers (0: off)

    def __post_init__(self):
        for name, least in (("curve_points", 2), ("randomize", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise GalleryError(f"{name} must be a whole number of at least {least}, got {value!r}")
        if isinstance(self.trajectory, bool) or not isinstance(self.trajectory, int) or self.trajectory < 0:
            raise GalleryError(f"trajectory must be a number of snapshots (0 for none), got {self.trajectory!r}")
        if self.executor not in EXECUTORS:
            raise GalleryError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.ray_address is not None and self.executor != "ray":
            raise GalleryError("--ray-address needs --executor ray")
        if not (self.caricatures in (None, "auto") or isinstance(self.caricatures, tuple)):
            raise GalleryError(f"caricatures must be 'auto', None or a tuple of layer names, got {self.caricatures!r}")


def parse_filter_slice(text: str) -> slice:
    """Parse ``'0:64'``, ``':16'``, ``'8:'``, ``'5'`` or ``'0:64:2'`` into a slice."""
    raw = text.strip()
    parts = raw.split(":")
    try:
        if len(parts) == 1:
            index = int(parts[0])
            if index < 0:
                raise ValueError
            return slice(index, index + 1)
        if len(parts) > 3:
            raise ValueError
        numbers = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise GalleryError(
            f"--filters expects START:STOP[:STEP] with non-negative integers (e.g. 0:64), got {text!r}"
        ) from None
    start, stop = numbers[0], numbers[1]
    step = numbers[2] if len(numbers) == 3 else None
    if any(n is not None and n < 0 for n in (start, stop)) or (step is not None and step <= 0):
        raise GalleryError(f"--filters expects non-negative bounds and a positive step, got {text!r}")
    if start is not None and stop is not None and stop <= start:
        raise GalleryError(f"--filters range {text!r} is empty: STOP must be greater than START")
    return slice(start, stop, step)


PREPROCESS_NAMES = ("caffe", "tf", "torch", "none")  # gallery.model.preprocess.NAMES
PREPROCESS_EXPECTED = ("caffe, tf, torch, none, or mean=M1,…,std=S1,… (one of each per channel, on pixels "
                       "scaled to 0–1)")


def standardization(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(means, stds)`` of ``--preprocess mean=…,std=…``, or :class:`GalleryError` in one line."""
    head, sep, stds = text.strip().partition(",std=")
    if not head.startswith("mean=") or not sep:
        raise GalleryError(f"--preprocess: expected {PREPROCESS_EXPECTED}, got {text!r}")
    try:
        mean = tuple(float(v) for v in head[len("mean="):].split(","))
        std = tuple(float(v) for v in stds.split(","))
    except ValueError:
        raise GalleryError(f"--preprocess: expected numbers after mean= and std=, comma-separated "
                           f"(mean=0.1307,std=0.3081), got {text!r}") from None
    if not all(math.isfinite(v) for v in mean + std) or not all(s > 0 for s in std):
        raise GalleryError(f"--preprocess: expected finite means and positive stds, got {text!r}")
    if len(mean) != len(std):
        raise GalleryError(f"--preprocess: expected as many stds as means, one of each per channel, got {text!r} "
                           f"({len(mean)} means and {len(std)} stds)")
    return mean, std


def parse_preprocess(text: str) -> str:
    """``--preprocess``'s value, checked and in the canonical form cache keys and pages name:
    a convention's name, or ``mean=…,std=…`` with each number as Python writes it."""
    if text.strip().lower() in PREPROCESS_NAMES:
        return text.strip().lower()
    mean, std = standardization(text)
    return f"mean={','.join(map(repr, mean))},std={','.join(map(repr, std))}"


def parse_rgb_channels(text: str) -> tuple[int, int, int]:
    """``--rgb-channels 3,2,1``: three different channel indices (checked against the model
    once it is loaded, see :meth:`gallery.channels.Channels.of`)."""
    try:
        found = tuple(int(part) for part in text.split(","))
    except ValueError:
        found = ()
    if len(found) != 3 or len(set(found)) != 3 or min(found) < 0:
        raise GalleryError(f"--rgb-channels: expected three different channel indices such as 0,1,2, got {text!r}")
    return found
