"""Layer attributes swapped for the length of a block, in the thread that entered it.

A backward rule (guided backprop's rectifiers, :mod:`gallery.model.backward`'s
convolutions) is recorded by a trace when the layers it replaces are called while the
function traces. The user's model must not change, and renderers trace in threads, so a
:class:`Swap` replaces an attribute (a layer's ``call``, ``activation`` or
``convolution_op``) with a switch that takes the replacement only in the thread inside the
block, and restores the attribute when the block exits. One block per :class:`Swap` at a
time, so swaps of the same layers never interleave; the same thread may nest them.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterable


class Swap:
    """Swaps layers' attributes within a block, for the entering thread only."""

    def __init__(self):
        self._lock = threading.RLock()
        self._local = threading.local()

    def _switch(self, original: Callable, replacement: Callable) -> Callable:
        def switch(*args, **kwargs):
            if getattr(self._local, "depth", 0) > 0:
                return replacement(*args, **kwargs)
            return original(*args, **kwargs)

        return switch

    @contextmanager
    def __call__(self, replacements: Iterable[tuple[object, str, Callable]]):
        """Within the block, ``layer.attribute`` is ``make(original)`` for each
        ``(layer, attribute, make)``."""
        with self._lock:
            saved = []
            try:
                for layer, attr, make in replacements:
                    original = getattr(layer, attr)
                    saved.append((layer, attr, attr in vars(layer), original))
                    object.__setattr__(layer, attr, self._switch(original, make(original)))  # past Keras's tracking
                self._local.depth = getattr(self._local, "depth", 0) + 1
                try:
                    yield len(saved)
                finally:
                    self._local.depth -= 1
            finally:
                for layer, attr, own, original in reversed(saved):
                    if own:
                        object.__setattr__(layer, attr, original)
                    else:
                        object.__delattr__(layer, attr)


class ThreadFlag:
    """A switch that is on within a block, in the thread that entered it (benches' baselines)."""

    def __init__(self):
        self._local = threading.local()

    def __bool__(self) -> bool:
        return getattr(self._local, "on", False)

    @contextmanager
    def __call__(self):
        before = bool(self)
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = before
