"""Command line: parse → validate → config → pipeline.build. Nothing else.

Keras is imported only after the arguments are parsed, so ``--backend`` chooses the
backend once, before anything loads it, and ``--help`` answers instantly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from . import presets
from .config import (DIVERSE_COPIES, EXECUTORS, PARAMETERIZATIONS, PRECISIONS, STEP_TRANSFORMS, VARIANT_NAMES,
                     BuildConfig, RenderSettings, default_cache_dir, parse_filter_slice, public_command, valid_scales,
                     worker_threads)
from .console import clean, log, native_quiet
from .errors import GalleryError
from .presets import PRESETS

PREPROCESS = ("caffe", "tf", "torch", "none")
BACKENDS = ("tensorflow", "jax", "torch")
CAM_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "cam", "saliency", "smoothgrad", "guided-gradcam")


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def _seed(text: str) -> int:
    return _integer(text, 0, "a non-negative integer")


def _pages(text: str) -> int | None:
    return None if text.strip().lower() == "all" else _integer(text, 0, "a number of photos (0 or more) or 'all'")


def _snapshots(text: str) -> int:
    return _integer(text, 2, "a number of snapshots, 2 or more")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return names


def _scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        scales = ()
    if not valid_scales(scales):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1] ending with 1, such as 0.5,1, got {text!r}")
    return scales


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if names == ("none",):
        return ()
    if not names or any(n not in VARIANT_NAMES for n in names):
        raise argparse.ArgumentTypeError(f"expected 'none' or names from {', '.join(VARIANT_NAMES)}, got {text!r}")
    return names


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump: the flag, the value and what was expected."""
        self.exit(2, clean(f"error: {message} (see --help)") + "\n")


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in methods if m not in CAM_METHODS]
    if not methods or unknown:
        raise argparse.ArgumentTypeError(f"expected methods from {', '.join(CAM_METHODS)}, got {text!r}")
    return methods


def _scales_text(scales) -> str:
    return ",".join(f"{s:g}" for s in scales)


def _by_device(name: str, show=str) -> str:
    """A preset-controlled default as --help states it, from the preset table itself (its
    one home): the default preset's value on a CPU and on a GPU."""
    cpu, gpu = (PRESETS["default"][device].get(name) for device in ("cpu", "gpu"))
    if gpu == cpu:
        return f"default: {show(cpu)}"
    return f"default: {show(cpu)} on a CPU, {show(gpu)} on a GPU"


def parser() -> argparse.ArgumentParser:
    defaults = RenderSettings()
    p = _Parser(
        prog="build.py", allow_abbrev=False,  # "--layer" must not quietly mean "--layers"
        description="Build a static gallery of every conv filter of a Keras CNN, with feature maps and "
                    "Grad-CAM on sample photos.",
    )
    p.add_argument("--model", default="VGG16", metavar="NAME|PATH",
                   help="a keras.applications name (VGG16, ResNet50, …) or a .keras/.h5 file (default: VGG16)")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|PATH",
                   help="weights for a named model (default: imagenet)")
    p.add_argument("--preprocess", choices=PREPROCESS,
                   help="input preprocessing for a model file (known automatically for named models)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="class names: a JSON list or one name per line")
    p.add_argument("--layers", type=_names, metavar="a,b", help="conv layers to render (default: all)")
    p.add_argument("--filters", default=":", metavar="START:STOP",
                   help="filter indices per layer: 0:64, 8: or :16; a single number N means filter N alone "
                        "(default: all)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="default",
                   help="preview, default or high: tile size, steps, schedule, batch and variants, each "
                        "tuned for CPUs and for GPUs; the flags below override it (default: default)")
    p.add_argument("--size", type=_positive, help=f"filter image side in pixels ({_by_device('size')})")
    p.add_argument("--steps", type=_positive, help=f"optimization steps ({_by_device('steps')})")
    p.add_argument("--scales", type=_scales, metavar="0.5,1",
                   help="coarse-to-fine schedule: canvas sizes as fractions of the tile, ending with 1, each "
                        "given an equal share of the steps; 1 is full size throughout "
                        f"({_by_device('scales', _scales_text)})")
    p.add_argument("--seed", type=_seed, default=defaults.seed, help="random seed (default: 0)")
    p.add_argument("--batch", type=_positive, help=f"images per optimization batch, halved automatically when "
                                                   f"memory runs out ({_by_device('batch')})")
    p.add_argument("--variants", type=_variants, metavar="negative,diversity,neuron",
                   help="extra images per filter, shown on its page: what suppresses it, "
                        f"{DIVERSE_COPIES} diverse images, the centre unit (default: none; the high preset: "
                        "negative,diversity)")
    p.add_argument("--param", choices=PARAMETERIZATIONS, default=defaults.parameterization,
                   help="image parameterization: fourier (a 1/f spectrum, decorrelated colour), pixel, or maco "
                        "(only the phases of a spectrum whose amplitude is that of natural photos; its filter "
                        "pages also show where the network looked, as transparency) (default: fourier)")
    p.add_argument("--transforms", choices=STEP_TRANSFORMS, default=defaults.transforms,
                   help="robustness transforms: standard (Lucid's jitter, scale and rotation, seen through the "
                        "tile's own window), lucid (also on Lucid's 12-pixel padded canvas, 1.4x the cost at "
                        "128 px) or none (default: standard)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="compute dtype of the optimization loop: bfloat16 runs on GPU tensor cores at twice "
                        "TF32's speed, but is emulated (slower) on most CPUs; tiles are still scored "
                        f"in float32 ({_by_device('precision', lambda v: v or 'float32')})")
    p.add_argument("--trajectory", type=_snapshots, default=0, metavar="N",
                   help="record N snapshots of each filter image's optimization, from its starting noise (step 0) "
                        "to its final image, geometrically spaced steps of the same run (no extra steps), and "
                        "show them on its page with an animation: 2 up to the start and one per 8-step compiled "
                        "loop, 9 for 64 steps (default: off)")
    p.add_argument("--images", nargs="+", type=Path, metavar="PATH",
                   help="photo files and/or folders (default: bundled sample photos)")
    p.add_argument("--cam-layers", type=_names, metavar="a,b", help="layers for Grad-CAM (default: the last conv layer)")
    p.add_argument("--cam-method", type=_methods, default=("gradcam",), metavar="gradcam,…",
                   help="how photo pages explain their classes, comma-separated: the class activation maps gradcam, "
                        "gradcam++, scorecam, layercam, cam (at each --cam-layers layer), the pixel attributions "
                        "saliency and smoothgrad (once per photo), guided-gradcam (at each layer; ReLU models only) "
                        "(default: gradcam)")
    p.add_argument("--top-k", type=_positive, default=5, help="predicted classes per photo (default: 5)")
    p.add_argument("--photo-pages", type=_pages, default=48, metavar="N|all",
                   help="photos that get their own page with feature maps and CAMs; every photo still ranks "
                        "the filters' top photos (default: 48)")
    p.add_argument("--examples", type=_positive, default=8, metavar="N",
                   help="top photos shown on each filter page, with crops (default: 8)")
    p.add_argument("--out", type=Path, default=Path("site"), help="output folder (default: site/)")
    p.add_argument("--cache", type=Path, default=default_cache_dir(), help=f"tile cache (default: {default_cache_dir()})")
    p.add_argument("--cache-info", action="store_true", help="list what the cache holds, by kind and model, and exit")
    p.add_argument("--prune", action="store_true",
                   help="after the build, delete cache entries this build did not use (other models and settings)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where units of work run: local (this process) or ray (Ray workers: one per GPU, or "
                        "one per --worker-cpus CPUs; a local Ray unless --ray-address) (default: local)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT|ray://…",
                   help="join a running Ray cluster (with --executor ray); without it the build starts a local "
                        "Ray for itself and stops it at the end")
    p.add_argument("--worker-cpus", type=_positive, metavar="N",
                   help="CPUs (and threads) per Ray worker where the cluster has no GPUs, and the threads of a "
                        "local build (default: 4, or all of a smaller machine)")
    p.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: Keras's own setting)")
    p.add_argument("--unsafe", action="store_true", help="allow model files that carry code (Lambda layers)")
    p.add_argument("--list-layers", action="store_true",
                   help="print the model's conv layers with output shapes and filter counts, and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks and the backend's own start-up lines")
    return p


def config_from(args: argparse.Namespace, argv: list[str]) -> BuildConfig:
    from .model.grad import accelerator

    chosen = presets.resolve(args.preset, accelerator(), {
        "size": args.size, "steps": args.steps, "scales": args.scales, "batch": args.batch, "variants": args.variants,
        "precision": args.precision})
    variants = chosen.pop("variants", ())
    render = RenderSettings(seed=args.seed, parameterization=args.param, transforms=args.transforms, **chosen)
    if args.labels is not None and not args.labels.is_file():
        raise GalleryError(f"--labels: {str(args.labels)!r} is not a file")
    for path in args.images or ():
        if not path.exists():
            raise GalleryError(f"--images: {str(path)!r} is neither a file nor a folder")
    return BuildConfig(
        model=args.model, weights=args.weights, preprocess=args.preprocess, labels=args.labels,
        layers=args.layers, filters=parse_filter_slice(args.filters), render=render,
        images=tuple(args.images or ()), out=args.out, cache=args.cache, cam_layers=args.cam_layers,
        variants=variants, preset=args.preset, cam_methods=args.cam_method, top_k=args.top_k,
        photo_pages=args.photo_pages, examples=args.examples, safe_mode=not args.unsafe, prune=args.prune,
        command=public_command(argv), executor=args.executor, ray_address=args.ray_address,
        worker_cpus=args.worker_cpus, trajectory=args.trajectory, debug=args.debug,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the build is, so it stops as Ctrl-C stops it: pages say so."""


_TERMINATED = threading.Event()  # Ray's waits re-raise a signal's exception as a plain KeyboardInterrupt


def _terminate(signum, frame):
    _TERMINATED.set()
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    on_main = threading.current_thread() is threading.main_thread()
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _main(argv)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != args.backend:
            print(f"error: --backend {args.backend}: Keras is already loaded with another backend", file=sys.stderr)
            return 2
        os.environ["KERAS_BACKEND"] = args.backend
    try:
        # The backend's native start-up lines (no CUDA driver, cuInit 303, CPU features)
        # say nothing about the build and bury its first lines; --debug shows them.
        with native_quiet(enabled=not args.debug):
            from .model import grad

            # As many threads as each Ray worker has: the same bytes. A Ray driver computes
            # too (the peaks of tiles cached before they were recorded), so it keeps to them.
            grad.limit_threads(worker_threads(args.worker_cpus, os.cpu_count() or 1))
            grad.accelerator()  # starts the devices now, under the quiet

        config = config_from(args, argv)
        if args.list_layers:
            from .build import pipeline

            try:
                log(*pipeline.layer_listing(config), stream=sys.stdout)  # layer names come from the model file
            except BrokenPipeError:  # `| head` closed the pipe: not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.cache_info:
            from .build.cache import Cache

            log(*Cache(config.cache).report().splitlines(), stream=sys.stdout)  # kinds and models come from records
            return 0
        from .build import pipeline

        pipeline.build(config)
    except GalleryError as exc:
        if args.debug:
            raise
        log(f"error: {exc}")  # names a layer, photo or path: made safe for the terminal
        return 2
    except KeyboardInterrupt:
        terminated = _TERMINATED.is_set()  # set before Terminated is raised, whatever Ray made of it
        print(f"{'terminated' if terminated else 'interrupted'}; finished tiles are cached and the next run resumes "
              "from them", file=sys.stderr)
        return 143 if terminated else 130
    return 0
