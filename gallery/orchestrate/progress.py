"""How far a build has come, and an ETA that weighs work by what it costs.

Units differ in cost by orders of magnitude: a step on VGG16's block5_conv3 runs the
image through 12 conv layers first, one on block1_conv1 through none. So work is
counted in FLOPs (see :mod:`gallery.render.cost`), and time is predicted per layer from
the seconds per FLOP measured on that layer's own units so far, stage by stage of the
coarse-to-fine schedule (a coarse step costs a quarter as many FLOPs, but not a quarter
of the time), the running unit included. The first report of each stage is set apart,
since it carries the compiling of its loop. A first look at every layer comes early, so
each is measured soon; a stage not measured yet takes the rate the build's calibration
measured before it started (:mod:`gallery.orchestrate.estimate`), or borrows the rate of the
measured stage most like it in FLOPs per image-step, and while borrowed rates would carry
much of the work left the ETA is "estimating…" rather than a wrong figure. Photo units
report each pass (features, predictions, each method's maps) as it ends, weighed by its
own cost. Workers running side by side are counted by how busy they have been: remaining
work-seconds over that parallelism is the ETA.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from .. import stopping
from ..console import clean

# An ETA is shown once no more than this share of the work left is timed at a borrowed rate.
GUESSED = 0.2


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
    stages: list  # [(key, FLOPs of one step of all its images, steps)]; a key is (layer, canvas) or ("photos",)
    images: int  # filter images it renders (0 for photos)
    photos: int
    optimized: bool = True  # false for images solved in closed form (and photos): not counted in the rate
    done: int = 0  # steps taken
    started: float | None = None
    last: float | None = None  # when it last reported
    seconds: float | None = None  # once finished: how long it ran

    @property
    def flops(self) -> float:
        return sum(f * n for _, f, n in self.stages)

    def segments(self, first: int, last: int):
        """``(stage, FLOPs)`` of steps ``first`` to ``last`` (exclusive), stage by stage."""
        start = 0
        for i, (_, f, n) in enumerate(self.stages):
            overlap = min(last, start + n) - max(first, start)
            if overlap > 0:
                yield i, f * overlap
            start += n

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.stages)


class Progress:
    """Progress of a build's scheduled units, with counts that include cached work."""

    def __init__(self, units, cached_images: int, total_images: int, cached_photos: int, total_photos: int,
                 stream=None, interval: float = 10.0, clock_fn=time.monotonic, prior=None):
        """``units``: ``{id: (stages, images, photos[, optimized])}`` of the units that will run
        (see :class:`_Unit`); ``prior``: the calibration's ``(seconds per image-step, seconds
        per FLOP, seconds to compile a loop, layers it ran)`` (:mod:`gallery.orchestrate.estimate`),
        for stages not measured yet."""
        self.units = {uid: _Unit(list(stages), *rest) for uid, (stages, *rest) in units.items()}
        self.prior = prior
        self.total_flops = sum(u.flops for u in self.units.values()) or 1.0
        self.images = [cached_images, total_images]
        self.photos = [cached_photos, total_photos]
        self.stream = stream or sys.stderr
        self.interval = interval
        self.now = clock_fn
        self.first: float | None = None  # when the first unit started
        self.fresh_images = 0
        self.optimized = [0, 0.0]  # optimized images finished by this run, and the seconds their units took
        # Seconds and FLOPs measured per stage key; the first report of each stage of each
        # unit is kept apart, since it carries the compiling of that stage's loop.
        self.measured: dict[tuple, list] = {}  # key -> [seconds, flops, first seconds, first flops, first reports]
        self.tail = 0.0  # seconds the work after the last unit takes (the site's final writing), as measured
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.note = ""

    # events ------------------------------------------------------------------------------

    def start(self, uid, note: str = "") -> None:
        stopping.check()  # a SIGTERM whose exception was dropped is heard here (gallery.stopping)
        now = self.now()
        unit = self.units[uid]
        unit.started = unit.last = now
        self.first = self.first if self.first is not None else now
        self.note = note
        self.draw()

    def steps(self, uid, done: int) -> None:
        """``done`` optimization steps of a filter unit have run (as its loop reports)."""
        stopping.check()
        self._measure(self.units[uid], min(done, self.units[uid].steps), self.now())
        self.draw()

    def passed(self, uid, part: str) -> None:
        """A photo unit's pass ``part`` is done (see :meth:`gallery.orchestrate.units.photos.PhotoUnit.passes`)."""
        keys = [key for key, _, _ in self.units[uid].stages]
        if ("photos", part) in keys:
            self.steps(uid, keys.index(("photos", part)) + 1)

    def finish(self, uid, seconds: float | None = None) -> None:
        unit = self.units[uid]
        now = self.now()
        if unit.started is None:  # a remote worker ran it: the driver saw it leave, not start
            unit.started = unit.last = now - (seconds or 0.0)
            self.first = min(self.first or unit.started, unit.started)
        if seconds is not None:
            unit.last = min(unit.last, unit.started + seconds)
            now = unit.started + seconds
        self._measure(unit, unit.steps, max(now, unit.last))
        unit.seconds = now - unit.started
        self.images[0] += unit.images
        self.fresh_images += unit.images
        if unit.optimized and unit.images:
            self.optimized[0] += unit.images
            self.optimized[1] += unit.seconds
        self.photos[0] += unit.photos
        self.draw()

    def _measure(self, unit: _Unit, done: int, now: float) -> None:
        """Attribute the time since the unit's last report to the steps taken since, by FLOPs."""
        parts = list(unit.segments(unit.done, done))
        total = sum(f for _, f in parts)
        for stage, flops in parts:
            key = unit.stages[stage][0]
            share = (now - unit.last) * flops / total if total else 0.0
            entry = self.measured.setdefault(key, [0.0, 0.0, 0.0, 0.0, 0])
            entry[0] += share
            entry[1] += flops
            before = sum(n for _, _, n in unit.stages[:stage])
            if unit.done <= before:  # the first report within this stage
                entry[2] += share
                entry[3] += flops
                entry[4] += 1
        unit.done, unit.last = done, now

    # estimates -----------------------------------------------------------------------------

    def _rate(self, key: tuple) -> float | None:
        """Seconds per FLOP of a stage key without its first reports (compiling); ``None``
        while it has only the first report of one unit. A unit that reports only when it
        ends (a remote worker's) counts whole, from the second on; a photo pass reports once,
        so its one report counts."""
        seconds, flops, first_seconds, first_flops, firsts = self.measured.get(key, (0.0, 0.0, 0.0, 0.0, 0))
        if flops > first_flops:
            return (seconds - first_seconds) / (flops - first_flops)
        if flops and (firsts > 1 or key[0] == "photos"):
            return seconds / flops
        return None

    def remaining(self) -> float | None:
        """Seconds of wall time left, or ``None`` while it cannot be told well yet.

        Each stage still to run is timed at its own rate, once its loop has run past its
        compiling; a filter stage not measured so far takes the calibration's rate (and
        a compile) where there is one, else the rate of the measured stage most like it.
        Until stages timed at their own rates or the calibration's carry most of the work
        left, the answer is ``None`` ("estimating…"): a rate borrowed from a shallow layer
        or from a compile-laden first report is off by a large factor.
        """
        now = self.now()
        steady = {key for key in self.measured if self._rate(key) is not None}
        if not steady and self.prior is None:
            return None
        busy = sum(m[0] for m in self.measured.values())
        busy += sum(now - u.last for u in self.units.values() if u.seconds is None and u.last is not None)
        # Workers side by side: how many were busy at once, on average. Below one when the
        # driver's own work (refreshing the site) takes turns with an in-process worker.
        elapsed = now - self.first if self.first is not None else 0.0
        parallel = max(0.1, busy / elapsed) if elapsed > 5.0 else 1.0
        left = guessed = total = 0.0
        compiles = set()
        for unit in self.units.values():
            if unit.seconds is not None:
                continue
            for stage, flops in unit.segments(unit.done, unit.steps):
                key, step, _ = unit.stages[stage]
                rate = self._rate(key)
                if rate is None and self.prior is not None:
                    # The calibration's line: an overhead per image-step, plus the FLOPs at one
                    # rate; only the layers it ran are known, the others are a guess.
                    overhead, per_flop, _, known = self.prior
                    image_steps = flops / step * unit.images if unit.optimized and step else 0.0
                    left += flops * per_flop + image_steps * overhead
                    total += flops
                    guessed += 0.0 if key[0] in known else flops
                    if key not in self.measured and key[0] != "photos":
                        compiles.add(key)
                    continue
                if rate is None:
                    borrowed = [k for k in steady if (k[0] == "photos") == (key[0] == "photos")] or steady
                    if not borrowed:
                        return None
                    rate = self._rate(self._alike(key, step / max(unit.images, 1), borrowed))
                    guessed += flops
                left += flops * rate
                total += flops
        if total and guessed / total > GUESSED:
            return None
        compile_time = len(compiles) * self.prior[2] if self.prior is not None else 0.0
        return (left + compile_time) / parallel + self.tail

    def _alike(self, key: tuple, step: float, measured) -> tuple:
        """The measured stage most like an unmeasured one in FLOPs per image-step: it borrows
        that rate. (Cheap steps spend their time on per-step overhead, costly ones on
        convolutions, so seconds per FLOP differ between them by orders of magnitude.)"""
        steps = {k: f / max(u.images, 1) for u in self.units.values() for k, f, _ in u.stages
                 if k in measured and k[0] != "photos" and u.images}
        if not steps or key[0] == "photos":
            return max(measured, key=lambda k: self.measured[k][1])
        return min(steps, key=lambda k: abs(math.log(steps[k] / step)))

    def done(self) -> bool:
        return all(u.seconds is not None for u in self.units.values())

    def work_done(self) -> float:
        """The share of the work done, by FLOPs; below 1 until every unit has finished."""
        work = sum(f for u in self.units.values() for _, f in u.segments(0, u.done)) / self.total_flops
        return 1.0 if self.done() else min(work, 0.999)

    def rate(self) -> float | None:
        """Optimized filter images per minute: images solved in closed form (almost free)
        and photo passes are left out, so the rate compares like with like."""
        images, seconds = self.optimized
        if not images or seconds <= 0:
            return None
        return 60.0 * images / seconds

    def eta(self, left: float | None) -> str:
        if self.done():
            return "done"
        if left is None:
            return "estimating\u2026"
        return clock(max(left, 1.0))  # work remains: never "00:00"

    def status(self) -> dict:
        """What pages of the unfinished site say, in words and in figures."""
        left = self.remaining()
        images, total = self.images
        when = "estimating the time left\u2026" if left is None else about(left)
        text = (f"rendering: {images:,} of {total:,} filter images, {when}" if images < total else
                f"analysing photos: {self.photos[0]:,} of {self.photos[1]:,}, {when}")
        return {"text": text, "images": images, "total": total, "photos": self.photos[0],
                "photos_total": self.photos[1], "work": round(self.work_done(), 4),
                "seconds_left": None if left is None else round(left), "rate": self.rate(),
                "written": time.time()}

    def line(self) -> str:
        left = self.remaining()
        rate = self.rate()
        work = math.floor(self.work_done() * 1000) / 10  # never rounded up to 100%
        parts = [f"photos {self.photos[0]:,}/{self.photos[1]:,}", f"filter images {self.images[0]:,}/{self.images[1]:,}",
                 f"{work:5.1f}% of the work",
                 f"{rate:.1f} filters/min" if rate is not None else "-- filters/min",
                 f"ETA {self.eta(left)}"]
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
