"""Every command-line option, declared once: its flag, how its value is read, its default on
a CPU and on a GPU, its help, and the config field it fills.

The parser (:func:`gallery.cli.parser`), the config a command line becomes
(:func:`gallery.cli.config_from`), the defaults ``--help`` states and the README's options
table (:func:`markdown`; ``python -m gallery.options`` prints it) all come from
:data:`OPTIONS`, and tests/cli/test_options.py fails when the README's table drifts from it.
Defaults are not restated here: a preset's come from :data:`gallery.presets.PRESETS`, the
others from the fields of :class:`~gallery.config.BuildConfig` and
:class:`~gallery.config.RenderSettings`. Keras-free, so ``--help`` answers instantly.

Adding a flag is one :class:`Option` in :data:`OPTIONS` (and the field it fills).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import names
from .config import (CARICATURE_LAYERS, DEFAULT_WORKER_CPUS, DIVERSE_COPIES, EXECUTORS, PARAMETERIZATIONS, PRECISIONS, STEP_TRANSFORMS,
                     VARIANT_NAMES, BuildConfig, RenderSettings, parse_filter_slice, parse_preprocess,
                     parse_rgb_channels, valid_scales)
from .errors import GalleryError
from . import presets
from .presets import PRESETS

# ---- values as typed: each raises ArgumentTypeError, which argparse words as "argument --flag: …"


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def seed(text: str) -> int:
    return _integer(text, 0, "a non-negative integer")


def pages(text: str) -> int | None:
    return None if text.strip().lower() == "all" else _integer(text, 0, "a number of photos (0 or more) or 'all'")


def curve_steps(text: str) -> int:
    return _integer(text, 2, "a number of curve steps, 2 or more")


def snapshots(text: str) -> int:
    return _integer(text, 2, "a number of snapshots, 2 or more")


def _number(text: str, fits, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not fits(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def slope(text: str) -> float:
    return _number(text, lambda v: v > 0, "a positive number such as 1.5")


def fraction(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 1, "a number from 0 to below 1 such as 0.9")




def caricature_choice(text: str) -> tuple[str, ...] | str:
    choice = text.strip().lower()
    return "auto" if choice == "auto" else () if choice == "none" else layer_names(text)


def _checked(parse):
    """An argparse type from a parser that raises GalleryError ("--flag: expected …"): its one
    line, after the flag argparse names itself."""
    def run(text: str):
        try:
            return parse(text)
        except GalleryError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return run


def _listed(text: str) -> tuple[str, ...]:
    """The comma-separated names in ``text``, first mention kept, blanks dropped."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def layer_names(text: str) -> tuple[str, ...]:
    found = tuple(part.strip() for part in text.split(",") if part.strip())  # order and repeats as given
    if not found:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return found


def scales(text: str) -> tuple[float, ...]:
    try:
        found = tuple(float(part) for part in text.split(","))
    except ValueError:
        found = ()
    if not valid_scales(found):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1] ending with 1, such as 0.5,1, got {text!r}")
    return found


def _chosen(text: str, allowed: tuple[str, ...], expected: str) -> tuple[str, ...]:
    found = _listed(text)
    if not found or any(name not in allowed for name in found):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return found


def variants(text: str) -> tuple[str, ...]:
    if _listed(text) == ("none",):
        return ()
    return _chosen(text, VARIANT_NAMES, f"'none' or names from {', '.join(VARIANT_NAMES)}")


def methods(text: str) -> tuple[str, ...]:
    return _chosen(text, names.METHODS, f"methods from {', '.join(names.METHODS)}")


# ---- checks made when the config is made: a GalleryError, worded without argparse's prefix


def _labels_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise GalleryError(f"--labels: {str(path)!r} is not a file")
    return path


def _photo_paths(paths: list[Path] | None) -> tuple[Path, ...]:
    for path in paths or ():
        if not path.exists():
            raise GalleryError(f"--images: {str(path)!r} is neither a file nor a folder")
    return tuple(paths or ())


def _filter_slice(text: str | None) -> slice:
    return slice(None) if text is None else parse_filter_slice(text)


def _listed_text(values) -> str:
    return ",".join(map(str, values)) if values else "none"


def scales_text(values) -> str:
    return ",".join(f"{s:g}" for s in values)


@dataclass(frozen=True)
class Option:
    """One flag. ``field`` names what it fills: a :class:`BuildConfig` field, ``render.X`` for
    a :class:`RenderSettings` one, or ``None`` for what the command line alone reads (the
    backend, actions that exit). ``preset``: its default comes from the preset table, per
    device (``field``'s last part is the preset's key). ``default_text``: the default in words,
    where it is not a value (all, the last conv layer); otherwise ``show`` words the value."""

    flag: str
    help: str
    field: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    preset: bool = False
    default_text: str | None = None
    show: Callable[[Any], str] = str
    switch: bool = False  # takes no value: on when given
    several: bool = False  # takes one value or more (nargs="+")
    path: bool = False  # its values are local paths: published commands show them as such
    finish: Callable[[Any], Any] | None = None  # made into the field's value (and checked) with the config
    readme: str = ""  # markdown the README's table adds, such as a link to its section

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def part(self) -> str | None:
        """The settings its field is in: "render" or "build"; ``None`` for what the command
        line alone reads."""
        if self.field is None:
            return None
        return "render" if self.field.startswith("render.") else "build"

    @property
    def key(self) -> str | None:
        """The field's name within its dataclass (and a preset's key)."""
        return None if self.field is None else self.field.rpartition(".")[2]

    def default(self, device: str) -> Any:
        """The field's default on ``device`` ("cpu", "amx": a CPU with AMX, or "gpu"), from
        its one home."""
        if self.preset:
            chosen = presets.preset("default", None if device != "gpu" else "gpu", device == "amx")
            if self.key in chosen:
                return chosen[self.key]  # else the field's own default, as gallery.cli fills it
        owner = RenderSettings if self.part == "render" else BuildConfig
        found = {f.name: f for f in dataclasses.fields(owner)}[self.key]
        return found.default_factory() if found.default is dataclasses.MISSING else found.default

    def stated(self) -> str | None:
        """The default as --help and the README state it, on a CPU (and one with AMX) and on
        a GPU where they differ."""
        if self.default_text is not None or self.switch or self.field is None:
            return self.default_text
        cpu, amx, gpu = (self.show(self.default(device)) for device in ("cpu", "amx", "gpu"))
        if cpu == gpu == amx == "None":  # no default to state: the help says what its absence means
            return None
        if cpu == gpu == amx:
            return cpu
        return f"{cpu} on a CPU{'' if amx == cpu else f' ({amx} with AMX)'}, {gpu} on a GPU"

    def argument(self) -> tuple[list[str], dict]:
        """``add_argument``'s arguments. Options a preset fills, or ``finish`` makes into their
        field, default to ``None`` (not given); the others to their field's default."""
        settings = {"help": self.text().replace("%", "%%")}  # argparse formats help with %
        if self.switch:
            return [self.flag], {"action": "store_true", **settings}
        given = {"type": self.type, "choices": self.choices, "metavar": self.metavar,
                 "nargs": "+" if self.several else None}
        settings.update((k, v) for k, v in given.items() if v is not None)
        unset = self.preset or self.field is None or self.finish is not None
        return [self.flag], {**settings, "default": None if unset else self.default("cpu")}

    def finished(self, given: Any) -> Any:
        """The field's value from the value parsed (checked here where ``finish`` checks it)."""
        return given if self.finish is None else self.finish(given)

    def text(self) -> str:
        stated = self.stated()
        return self.help if stated is None else f"{self.help} (default: {stated})"


OPTIONS: tuple[Option, ...] = (
    Option("--model", "a keras.applications name (VGG16, VGG19, ResNet50, MobileNetV2, …) or a .keras/.h5 file",
           "model", metavar="NAME|PATH", path=True),
    Option("--weights", "weights for a named model", "weights", metavar="imagenet|PATH", path=True),
    Option("--preprocess", "input preprocessing for a model file (known automatically for named models): ImageNet's "
           "caffe, tf or torch convention, none, or per channel mean=M1,…,std=S1,… on pixels scaled to 0-1, as "
           "torchvision's Normalize (one of each per input channel: mean=0.1307,std=0.3081 for a grey digits "
           "model); caffe and torch need an RGB model", "preprocess", type=_checked(parse_preprocess),
           metavar="caffe|tf|torch|none|mean=…,std=…"),
    Option("--rgb-channels", "for a model of more than 3 channels: the three shown as red, green and blue, as "
           "channel indices", "rgb_channels", type=_checked(parse_rgb_channels), metavar="R,G,B",
           default_text="0,1,2"),
    Option("--labels", "class names: a JSON list or one name per line", "labels", type=Path, metavar="FILE",
           finish=_labels_file, path=True),
    Option("--layers", "conv layers to render (nested ones as backbone/layer)", "layers", type=layer_names,
           metavar="a,b", default_text="all"),
    Option("--filters", "filter indices per layer: 0:64, 8: or :16; a single number N means filter N alone",
           "filters", metavar="START:STOP", default_text="all", finish=_filter_slice),
    Option("--preset", "preview, default or high: tile size, steps, schedule, batch and variants, each tuned for "
           "CPUs and for GPUs; the flags below override it", "preset", choices=tuple(PRESETS),
           readme="; see [Presets](#presets)"),
    Option("--size", "filter image side in pixels", "render.size", type=positive, metavar="N", preset=True),
    Option("--steps", "optimization steps", "render.steps", type=positive, metavar="N", preset=True),
    Option("--scales", "coarse-to-fine schedule: canvas sizes as fractions of the tile, ending with 1, each given an "
           "equal share of the steps; 1 is full size throughout", "render.scales", type=scales, metavar="0.5,1",
           preset=True, show=scales_text),
    Option("--decay", "slope of the Fourier image's amplitude spectrum, 1/f^X (Lucid's is 1): steeper favours large "
           "forms, shallower fine detail; presets of hundreds of steps take a steeper one, since long runs grow the "
           "finest frequencies into a 2-pixel grating", "render.decay", type=slope, metavar="X", preset=True),
    Option("--contrast", "how far a filter image may stray from mid-grey: the largest root mean square of its "
           "decorrelated colour coordinates before the sigmoid, a ball that shades where the sigmoid's box alone "
           "posterizes; wider gives more contrast and activation, and past about 2.5 the sparse filters of fine layers "
           "go black (layers linear in the pixels are never bounded)", "render.contrast", type=slope, metavar="X"),
    Option("--coarse-contrast", "--contrast for the coarse layers (output stride 4 or more) of an RGB model without "
           "depthwise convolutions, whose patterns spread over the tile and stay unclipped at 3",
           "render.coarse_contrast", type=slope, metavar="X", preset=True,
           show=lambda value: "--contrast's" if value is None else str(value)),
    Option("--coarse-decay", "--decay for those coarse layers: inside their wider ball a shallower slope forms finer "
           "structure within the steps", "render.coarse_decay", type=slope, metavar="X", preset=True,
           show=lambda value: "--decay's" if value is None else str(value)),
    Option("--lr", "Adam's step size on the image's parameters", "render.learning_rate", type=slope, metavar="X"),
    Option("--depthwise-lr", "--lr for the layers of a model with depthwise convolutions (MobileNet, EfficientNet), "
           "which rise further at 64 steps with a smaller step than VGG16's layers", "render.depthwise_lr",
           type=slope, metavar="X", preset=True, show=lambda value: "--lr's" if value is None else str(value)),
    Option("--depthwise-decay", "--decay for the layers of a model with depthwise convolutions", "render.depthwise_decay",
           type=slope, metavar="X", preset=True,
           show=lambda value: "--decay's" if value is None else str(value)),
    Option("--momentum", "Adam's beta1, how much of past steps' gradients each step keeps (0 to below 1)",
           "render.momentum", type=fraction, metavar="X"),
    Option("--depthwise-momentum", "--momentum for the layers of a model with depthwise convolutions, which rise "
           "further at 64 steps with a shorter memory", "render.depthwise_momentum", type=fraction, metavar="X",
           preset=True, show=lambda value: "--momentum's" if value is None else str(value)),
    Option("--seed", "random seed", "render.seed", type=seed, metavar="N"),
    Option("--batch", "images per optimization batch, halved automatically when memory runs out", "render.batch",
           type=positive, metavar="N", preset=True),
    Option("--variants", f"extra images per filter, shown on its page: what suppresses it, {DIVERSE_COPIES} diverse "
           "images, the centre unit; the high preset adds negative,diversity", "variants", type=variants,
           metavar="negative,diversity,neuron", preset=True, show=_listed_text),
    Option("--param", "image parameterization: fourier (a 1/f spectrum, decorrelated colour), pixel, or maco (only "
           "the phases of a spectrum whose amplitude is that of natural photos; its filter pages also show where the "
           "network looked, as transparency)", "render.parameterization", choices=PARAMETERIZATIONS,
           readme="; see [MACO](#maco-phases-under-a-natural-spectrum)"),
    Option("--transforms", "robustness transforms: standard (Lucid's jitter, scale and rotation, seen through the "
           "tile's own window), lucid (also on Lucid's 12-pixel padded canvas, 1.4x the cost at 128 px) or none",
           "render.transforms", choices=STEP_TRANSFORMS),
    Option("--precision", "compute dtype of the optimization loop: bfloat16 runs on GPU tensor cores at twice TF32's "
           "speed and on CPUs with AMX (under TensorFlow) several times faster than float32, but is emulated "
           "(slower) on other CPUs; tiles are still scored in float32", "render.precision",
           choices=PRECISIONS, preset=True),
    Option("--trajectory", "record N snapshots of each filter image's optimization, from its starting noise (step 0) "
           "to its final image, geometrically spaced steps of the same run (no extra steps), and show them on its page "
           "with an animation: 2 up to the start and one per 8-step compiled loop, 9 for 64 steps; needs a Pillow "
           "that writes animated WebP", "trajectory", type=snapshots, metavar="N", show=lambda n: n or "off",
           readme=". The page shows the frames in a row at 128 px, each labelled with its peak and mean, and a small "
           "looping animated WebP (the finished tile where the system asks for reduced motion); more snapshots than "
           "places, or a Pillow without animated WebP, is refused in one line"),
    Option("--caricatures", "layers (of those rendered) that draw a caricature of each photo with a page: an "
           "image optimized so that the layer responds to it as to the photo; auto picks "
           f"{CARICATURE_LAYERS} spread over the layers' depth", "caricatures", type=caricature_choice,
           metavar="auto|none|a,b", preset=True,
           show=lambda v: "auto" if v in (None, "auto") else ",".join(v) or "none",
           readme="; see [Caricatures](#caricatures)"),
    Option("--images", "photo files and/or folders", "images", type=Path, metavar="PATH", several=True,
           default_text="bundled sample photos: scikit-image's cat, coffee, rocket and astronaut", finish=_photo_paths,
           path=True),
    Option("--cam-layers", "layers for the class activation maps", "cam_layers", type=layer_names, metavar="a,b",
           default_text="the last conv layer"),
    Option("--cam-method", "how photo pages explain their classes, comma-separated: the class activation maps "
           f"{', '.join(names.CAM_METHODS)} (at each --cam-layers layer), the pixel attributions "
           f"{' and '.join(names.LAYER_FREE)} (once per photo), {names.GUIDED} (at each layer; ReLU models only)",
           "cam_methods", type=methods, metavar="gradcam,…", show=",".join),
    Option("--curve-points", "steps of each map's deletion and insertion curves, 2N forwards per map (10: a "
           "point every 10%)", "curve_points", type=curve_steps, metavar="N"),
    Option("--randomize", "check each method's top-class map against copies of the model whose top 1..K conv/dense "
           "layers are re-initialized (Adebayo et al., 2018); K+1 times a map's cost per photo and method, and a copy "
           "of the model per level in memory; 3 is a good start", "randomize", type=seed, metavar="K",
           show=lambda k: k or "0, off", readme="; see [What a build does](#what-a-build-does)"),
    Option("--top-k", "predicted classes per photo", "top_k", type=positive, metavar="N"),
    Option("--photo-pages", "photos that get their own page with feature maps and CAMs; every photo still ranks the "
           "filters' top photos", "photo_pages", type=pages, metavar="N|all"),
    Option("--examples", "top photos shown on each filter page, with crops", "examples", type=positive, metavar="N"),
    Option("--out", "output folder", "out", type=Path, metavar="DIR", show=lambda p: f"{p}/", path=True),
    Option("--cache", "tile cache, outside the site so deleting the site never throws work away", "cache", type=Path,
           metavar="DIR", default_text="$XDG_CACHE_HOME/cnn-gallery, or ~/.cache/cnn-gallery", path=True),
    Option("--cache-info", "list what the cache holds, by kind and model, and exit", switch=True),
    Option("--prune", "after the build, delete cache entries this build did not use (other models and settings)",
           "prune", switch=True),
    Option("--executor", "where units of work run: local (this process) or ray (Ray workers: one per GPU, or one per "
           "--worker-cpus CPUs; a local Ray unless --ray-address)", "executor", choices=EXECUTORS,
           readme="; see [Full-scale builds](#full-scale-builds)"),
    Option("--ray-address", "join a running Ray cluster (with --executor ray); without it the build starts a local Ray "
           "for itself and stops it at the end", "ray_address", metavar="auto|HOST:PORT|ray://…"),
    Option("--worker-cpus", "CPUs (and threads) per Ray worker where the cluster has no GPUs, and the threads of a "
           "local build", "worker_cpus", type=positive, metavar="N",
           default_text=f"{DEFAULT_WORKER_CPUS}, or all of a smaller machine"),
    Option("--backend", "Keras backend, chosen once before Keras loads", choices=names.BACKENDS,
           default_text="Keras's own setting"),
    Option("--unsafe", "allow model files that carry code (Lambda layers); safe mode is on by default", "safe_mode",
           switch=True, finish=lambda unsafe: not unsafe),
    Option("--list-layers", "print the model's conv layers with output shapes and filter counts, and exit",
           switch=True),
    Option("--debug", "show tracebacks instead of one-line errors, and the backend's own start-up lines (CUDA, CPU "
           "features), which a build otherwise holds back", "debug", switch=True),
)
PATH_FLAGS = tuple(option.flag for option in OPTIONS if option.path)  # published as paths (config.public_command)
SEVERAL = tuple(option.flag for option in OPTIONS if option.several)


def markdown() -> str:
    """The README's options table."""
    rows = ["| flag | meaning |", "| --- | --- |"]
    for option in OPTIONS:
        shown = option.metavar or ("|".join(option.choices) if option.choices else None)
        flag = f"`{option.flag}{'' if shown is None else ' ' + shown}{'…' if option.several else ''}`"
        cell = option.text() + option.readme
        rows.append(f"| {flag.replace('|', chr(92) + '|')} | {cell.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
