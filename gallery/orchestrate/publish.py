"""The site while the build runs: written at once, refreshed as units settle, finished last.

A refresh rebuilds the manifest from what the build knows and hands it to the
:class:`~gallery.site.pages.SiteWriter`, which writes only what changed. Refreshes come at
most every few seconds, and no more often than keeps them to about a twentieth of the
build's time, however large the site grows.
"""

from __future__ import annotations

import time

from ..site.pages import status_path, status_script

MIN_INTERVAL = 3.0  # seconds between refreshes, at least
SHARE = 0.05  # of the build's time that refreshes may take


class Publisher:
    def __init__(self, writer, make):
        """``make(status)`` returns ``(manifest, files)``, the manifest a
        :class:`~gallery.site.records.Manifest`; ``status`` is ``None`` once done."""
        self.writer, self.make = writer, make
        self._next = 0.0
        self.spent = 0.0  # seconds the last refresh took: what the final one will take, about
        self.refreshes = 0
        self.model: str | None = None  # the model's folder, once the site is written
        self.written = {"tiles": 0, "pages": 0, "unchanged": 0, "removed": 0}  # over every refresh

    def refresh(self, status: dict | None, force: bool = False):
        """Write the site now if it is time (or ``force``); ``(manifest, counts)`` or ``None``."""
        start = time.monotonic()
        if not force and start < self._next:
            return None
        data, files = self.make(status)
        written = self.writer.write(data, files)
        self.model = data.model.slug
        spent = self.spent = time.monotonic() - start
        self._next = time.monotonic() + max(MIN_INTERVAL, spent / SHARE)
        self.refreshes += 1
        for name, count in written.items():
            self.written[name] += count
        return data, written

    def interrupted(self, status: dict) -> None:
        """Say on the pages that the build stopped, if the site has been written; best effort."""
        if not self.refreshes:
            return
        text = (f"This build stopped at {status['images']:,} of {status['total']:,} filter images; "
                "run it again to finish it (finished work is kept).")
        stopped = {**status, "text": text, "stopped": True, "seconds_left": None}
        try:
            self.writer.folder.write(status_path(self.model), status_script(self.model, stopped))
        except Exception:  # a full disk, say: the error that stopped the build is the one to report
            pass
