"""Where one model's pages and images live, relative to the site root.

The manifest's parts (:mod:`.manifest`, :mod:`.photo_pages`) share one :class:`Urls`, so a
filter's link from a photo page and the filter's own page cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PENDING = "static/pending.svg"  # what a filter or photo shows until the build settles it


@dataclass(frozen=True)
class Urls:
    """``base`` is the model's folder; ``slug`` names a layer's folder (distinct over every
    layer the site names); ``tiles`` maps ``(layer, index)`` to each filter this build renders."""

    base: str
    slug: Callable[[str], str]
    tiles: dict

    def layer(self, name: str) -> str:
        return f"{self.base}/layers/{self.slug(name)}"

    def photo(self, photo_slug: str) -> str:
        return f"{self.base}/photos/{photo_slug}"

    def link(self, layer: str | None, index: int) -> dict:
        """A filter's page and thumbnail, when this build renders it."""
        tile = self.tiles.get((layer, index))
        if tile is None:
            return {"page": None, "thumb": None}
        stem = f"{self.layer(layer)}/{index}"
        return {"page": f"{stem}.html", "thumb": PENDING if tile.pending else f"{stem}.thumb.jpg"}
