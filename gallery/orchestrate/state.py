"""What a build knows so far: each unit kind's settled entries, as the tiles the site shows.

The driver absorbs each unit once it is settled, in whatever order units finish; the unit
itself says how (:meth:`~.units.filters.FilterUnit.absorb`, into :attr:`Gallery.filters`;
:meth:`~.units.photos.PhotoUnit.absorb`, into :attr:`Gallery.photos`). Filters and
photos not settled yet are *pending*; the site shows them with a placeholder until a later
refresh.
"""

from __future__ import annotations

from .units import Job
from .units.filters import FilterBoard
from .units.photos import PhotoBoard


class Gallery:
    def __init__(self, job: Job, photos, pages: int | None, top_k: int, examples: int):
        self.filters = FilterBoard(job)
        self.photos = PhotoBoard(job, photos, pages, top_k, examples)

    def absorb(self, unit, found: dict, cache, skipped=()) -> None:
        unit.absorb(self, found, cache, skipped)

    @property
    def images(self) -> int:
        """Filter images settled."""
        return len(self.filters.images)

    @property
    def photos_done(self) -> int:
        """Photos settled, or known to be unreadable."""
        return len(self.photos.tiles) + len(self.photos.broken)
