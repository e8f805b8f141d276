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

from . import presets, stopping
from .config import BuildConfig, RenderSettings, public_command, worker_threads
from .console import clean, log, native_quiet
from .errors import GalleryError
from .options import OPTIONS


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump: the flag, the value and what was expected."""
        self.exit(2, clean(f"error: {message} (see --help)") + "\n")


def parser() -> argparse.ArgumentParser:
    """The flags of :data:`gallery.options.OPTIONS`, in its order."""
    p = _Parser(
        prog="build.py", allow_abbrev=False,  # "--layer" must not quietly mean "--layers"
        description="Build a static gallery of every conv filter of a Keras CNN, with feature maps and "
                    "Grad-CAM on sample photos.",
    )
    for option in OPTIONS:
        flags, settings = option.argument()
        p.add_argument(*flags, **settings)
    return p


def config_from(args: argparse.Namespace, argv: list[str]) -> BuildConfig:
    """The config of parsed ``args``: each flag given, else the preset's value on this
    machine where a preset sets one, else the field's own default."""
    from .model import grad

    given = {option.key: getattr(args, option.dest) for option in OPTIONS if option.preset}
    device = grad.accelerator()
    chosen = presets.resolve(args.preset, device, given)
    render = RenderSettings(**_fields(args, chosen, "render"))  # checked before the paths and filters are
    extra = {}
    if device is None and grad.cpu_bf16():  # AMX's settings, unless the model turns out to have depthwise convs
        plain = RenderSettings(**_fields(args, presets.resolve(args.preset, device, given, bf16_cpu=False), "render"))
        extra = {"render_if_depthwise": plain} if plain != render else {}
    return BuildConfig(render=render, command=public_command(argv), **extra, **_fields(args, chosen, "build"))


def _fields(args: argparse.Namespace, chosen: dict, part: str) -> dict:
    """The fields of ``part`` ("render" or "build") that a flag or the preset sets."""
    found = {}
    for option in OPTIONS:
        if option.part != part:
            continue
        if not option.preset:
            found[option.key] = option.finished(getattr(args, option.dest))
        elif option.key in chosen:  # a preset without it leaves the field's default
            found[option.key] = chosen[option.key]
    return found


def main(argv: list[str] | None = None) -> int:
    on_main = threading.current_thread() is threading.main_thread()
    handlers = {signal.SIGTERM: stopping.on_sigterm, signal.SIGINT: stopping.on_sigint}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()} if on_main else {}
    try:
        return _main(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stopping.clear()  # heard: a later build in this process (an API caller, a test) runs


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
            from .orchestrate import pipeline

            try:
                log(*pipeline.layer_listing(config), stream=sys.stdout)  # layer names come from the model file
            except BrokenPipeError:  # `| head` closed the pipe: not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.cache_info:
            from .orchestrate.cache import Cache

            log(*Cache(config.cache).report().splitlines(), stream=sys.stdout)  # kinds and models come from records
            return 0
        from .orchestrate import pipeline

        pipeline.build(config)
    except GalleryError as exc:
        if args.debug:
            raise
        log(f"error: {exc}")  # names a layer, photo or path: made safe for the terminal
        return 2
    except KeyboardInterrupt:
        terminated = stopping.REQUESTED.is_set()  # set before Terminated is raised, whatever Ray made of it
        print(f"{'terminated' if terminated else 'interrupted'}; finished tiles are cached and the next run resumes "
              "from them", file=sys.stderr)
        return 143 if terminated else 130
    return 0
