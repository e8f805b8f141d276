"""How far a build has come, and an ETA that weighs work by what it costs.

Units differ in cost by orders of magnitude: a step on VGG16's block5_conv3 runs the
image through 12 conv layers first, one on block1_conv1 through none. So work is
counted in FLOPs (see :mod:`gallery.render.cost`), and time is predicted per layer from
the seconds per FLOP measured on that layer's own units so far, including the one
running (a first look at every layer comes early, so each is measured soon). A layer not
measured yet borrows the rate of all measured work. Workers running side by side are
counted by how busy they have been: remaining work-seconds over that parallelism is the
ETA.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ..console import clean


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def about(seconds: float | None) -> str:
    """``"about 2 h 10 min"``, as a person would say it."""
    if seconds is None:
        return "time left not known yet"
    if seconds < 60:
        return "under a minute left"
    minutes = round(seconds / 60)
    h, m = divmod(minutes, 60)
    return f"about {h} h {m} min left" if h else f"about {m} min left"


@dataclass
class _Unit:
    group: str  # a layer, or "photos": units of a group cost alike per FLOP
    flops: float
    images: int  # filter images it renders (0 for photos)
    photos: int
    fraction: float = 0.0
    started: float | None = None
    seconds: float | None = None  # once finished: how long it ran


class Progress:
    """Progress of a build's scheduled units, with counts that include cached work."""

    def __init__(self, units, cached_images: int, total_images: int, cached_photos: int, total_photos: int,
                 stream=None, interval: float = 10.0, clock_fn=time.monotonic):
        """``units``: ``{id: (group, flops, images, photos)}`` of the units that will run."""
        self.units = {uid: _Unit(*spec) for uid, spec in units.items()}
        self.total_flops = sum(u.flops for u in self.units.values()) or 1.0
        self.images = [cached_images, total_images]
        self.photos = [cached_photos, total_photos]
        self.stream = stream or sys.stderr
        self.interval = interval
        self.now = clock_fn
        self.first: float | None = None  # when the first unit started
        self.first_filter: float | None = None
        self.fresh_images = 0
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.note = ""

    # events ------------------------------------------------------------------------------

    def start(self, uid, note: str = "") -> None:
        now = self.now()
        unit = self.units[uid]
        unit.started = now
        self.first = self.first if self.first is not None else now
        if unit.images and self.first_filter is None:
            self.first_filter = now
        self.note = note
        self.draw()

    def advance(self, uid, fraction: float) -> None:
        self.units[uid].fraction = min(1.0, fraction)
        self.draw()

    def finish(self, uid, seconds: float | None = None) -> None:
        unit = self.units[uid]
        now = self.now()
        if unit.started is None:  # a remote worker ran it: the driver saw it leave, not start
            unit.started = now - (seconds or 0.0)
            self.first = min(self.first or unit.started, unit.started)
            if unit.images:
                self.first_filter = min(self.first_filter or unit.started, unit.started)
        unit.seconds = seconds if seconds is not None else now - unit.started
        unit.fraction = 1.0
        self.images[0] += unit.images
        self.fresh_images += unit.images
        self.photos[0] += unit.photos
        self.draw()

    # estimates -----------------------------------------------------------------------------

    def _measured(self, unit: _Unit, now: float) -> tuple[float, float]:
        """``(seconds, flops)`` measured on a unit so far."""
        if unit.seconds is not None:
            return unit.seconds, unit.flops
        if unit.started is not None and unit.fraction > 0:
            return now - unit.started, unit.fraction * unit.flops
        return 0.0, 0.0

    def remaining(self) -> float | None:
        """Seconds of wall time left, or ``None`` before anything has been measured."""
        now = self.now()
        seconds, flops = {}, {}
        for unit in self.units.values():
            s, f = self._measured(unit, now)
            if f > 0:
                seconds[unit.group] = seconds.get(unit.group, 0.0) + s
                flops[unit.group] = flops.get(unit.group, 0.0) + f
        if not flops:
            return None
        pooled = sum(seconds.values()) / sum(flops.values())
        busy = sum(seconds.values())
        busy += sum(now - u.started for u in self.units.values()
                    if u.seconds is None and u.started is not None and u.fraction == 0)
        # Workers side by side: how many were busy at once, on average. Below one when the
        # driver's own work (refreshing the site) takes turns with an in-process worker.
        parallel = max(0.1, busy / max(now - self.first, 1e-9))
        left = 0.0
        for unit in self.units.values():
            if unit.seconds is None:
                rate = seconds[unit.group] / flops[unit.group] if unit.group in flops else pooled
                left += (1.0 - unit.fraction) * unit.flops * rate
        return left / parallel

    def work_done(self) -> float:
        return sum(u.flops * u.fraction for u in self.units.values()) / self.total_flops

    def rate(self) -> float | None:
        """Filter images per minute rendered by this run."""
        if self.first_filter is None or not self.fresh_images:
            return None
        return 60.0 * self.fresh_images / max(self.now() - self.first_filter, 1e-9)

    def status(self) -> dict:
        """What pages of the unfinished site say, in words and in figures."""
        left = self.remaining()
        images, total = self.images
        text = (f"rendering: {images:,} of {total:,} filter images, {about(left)}" if images < total else
                f"analysing photos: {self.photos[0]:,} of {self.photos[1]:,}, {about(left)}")
        return {"text": text, "images": images, "total": total, "photos": self.photos[0],
                "photos_total": self.photos[1], "work": round(self.work_done(), 4),
                "seconds_left": None if left is None else round(left), "rate": self.rate()}

    def line(self) -> str:
        left = self.remaining()
        rate = self.rate()
        parts = [f"photos {self.photos[0]:,}/{self.photos[1]:,}", f"filter images {self.images[0]:,}/{self.images[1]:,}",
                 f"{self.work_done():6.1%} of the work",
                 f"{rate:.1f} filters/min" if rate is not None else "-- filters/min",
                 f"ETA {clock(left)}" if left is not None else "ETA --:--"]
        return " · ".join(parts) + (f"  {self.note}" if self.note else "")

    def draw(self, force: bool = False) -> None:
        now = self.now()
        if not force and now - self._last < (0.2 if self._tty else self.interval):
            return
        self._last = now
        text = clean(self.line())  # notes carry layer names
        self.stream.write(("\r\033[K" + text) if self._tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.draw(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
