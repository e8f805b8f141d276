"""Progress lines with rate and ETA, so long stages never look frozen."""

from __future__ import annotations

import sys
import time

from ..console import clean


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress("filters", total) as bar: bar.advance(n)``.

    On a terminal the line redraws in place; in logs (CI, pipes) a line is printed
    every ``interval`` seconds and at the end.
    """

    def __init__(self, label: str, total: float, unit: str = "", stream=None, interval: float = 10.0):
        self.label = label
        self.total = max(total, 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.interval = interval
        self.done = 0.0
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self):
        self._draw(force=True)
        return self

    def __exit__(self, *exc):
        self._draw(force=True, final=True)

    def advance(self, amount: float = 1, note: str = "") -> None:
        self.done += amount
        self._draw(note=note)

    def line(self, note: str = "") -> str:
        elapsed = time.monotonic() - self.start
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = _clock(eta) if eta == eta else "--:--"
        done = int(self.done) if float(self.done).is_integer() else round(self.done, 1)
        total = int(self.total) if float(self.total).is_integer() else round(self.total, 1)
        text = (f"{self.label}: {done}/{total}{self.unit} {frac:6.1%} "
                f"elapsed {_clock(elapsed)} ETA {eta_text}")
        return f"{text}  {note}" if note else text

    def _draw(self, force: bool = False, final: bool = False, note: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self._tty else self.interval):
            return
        self._last = now
        text = clean(self.line(note))  # notes carry photo and layer names
        if self._tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
