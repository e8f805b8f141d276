"""SIGTERM and Ctrl-C stop a build: the pages say it stopped, finished tiles stay cached.

Each signal's handler raises where the main thread is (:class:`Terminated` for SIGTERM,
``KeyboardInterrupt`` for SIGINT). But an exception raised while Python runs a
garbage-collection callback or a finalizer (JAX and TensorFlow both register some) is
printed as "Exception ignored in ..." and dropped, and the build would run on to its end.
So each handler also records the request, and the build's own progress reports
(:func:`check`) raise it again until it is heard.
"""

from __future__ import annotations

import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the build is, so it stops as Ctrl-C stops it: pages say so."""


# Events, not flags: Ray's waits re-raise a signal's exception as a plain
# KeyboardInterrupt, and the CLI tells the two apart by them.
REQUESTED = threading.Event()  # SIGTERM
INTERRUPTED = threading.Event()  # SIGINT (Ctrl-C)


def on_sigterm(signum, frame):
    REQUESTED.set()
    raise Terminated()


def on_sigint(signum, frame):
    INTERRUPTED.set()
    raise KeyboardInterrupt()


def check() -> None:
    """Raise what a signal asked for if one has arrived: called where the build reports progress."""
    if REQUESTED.is_set():
        raise Terminated()
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt()


def clear() -> None:
    """Forget both: a later build in this process runs."""
    REQUESTED.clear()
    INTERRUPTED.clear()
