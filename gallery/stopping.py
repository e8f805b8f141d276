"""SIGTERM stops a build as Ctrl-C does: the pages say it stopped, finished tiles stay cached.

The signal's handler raises :class:`Terminated` wherever the main thread is. But an
exception raised while Python runs a garbage-collection callback or a finalizer (JAX and
TensorFlow both register some) is printed as "Exception ignored in ..." and dropped, and
the build would run on to its end. So the handler also sets :data:`REQUESTED`, and the
build's own progress reports (:func:`check`) raise it again until it is heard.
"""

from __future__ import annotations

import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the build is, so it stops as Ctrl-C stops it: pages say so."""


# An Event, not a flag: Ray's waits re-raise a signal's exception as a plain
# KeyboardInterrupt, and the CLI tells the two apart by it.
REQUESTED = threading.Event()


def on_sigterm(signum, frame):
    REQUESTED.set()
    raise Terminated()


def check() -> None:
    """Raise :class:`Terminated` if SIGTERM has arrived: called where the build reports progress."""
    if REQUESTED.is_set():
        raise Terminated()
