"""Top photos per filter (OpenAI Microscope's "dataset examples"), ranked while streaming.

Each photo contributes, for every channel of a layer, its strongest activation anywhere
in the map (``max_ij A_ij^k``) and where that is. Only the best ``k`` photos per filter
are kept, so memory stays ``O(filters × k)`` however many photos stream past.
"""

from __future__ import annotations

import numpy as np

PEAK_KEYS = ("peak", "at")


def peaks(maps: np.ndarray) -> dict:
    """``(h, w, c)`` activations → each channel's peak and its centre as a fraction of the map.

    ``at[k] = ((row + ½) / h, (col + ½) / w)`` of the strongest unit: independent of the
    map's resolution, so it locates the same spot on the photo at any display size.
    """
    h, w, c = maps.shape
    flat = maps.reshape(h * w, c)
    where = flat.argmax(axis=0)
    return {
        "peak": [round(float(v), 4) for v in flat.max(axis=0)],
        "at": [[round((int(i) // w + 0.5) / h, 4), round((int(i) % w + 0.5) / w, 4)] for i in where],
        "map": [int(h), int(w)],
    }


class TopExamples:
    """Running top-``k`` photos for every channel of every layer."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"top examples need k >= 1, got {k}")
        self.k = k
        self._score: dict[str, np.ndarray] = {}  # layer -> (c, k) peaks, -inf where empty
        self._photo: dict[str, np.ndarray] = {}  # layer -> (c, k) photo ids
        self._at: dict[str, np.ndarray] = {}  # layer -> (c, k, 2)
        self.maps: dict[str, list[int]] = {}  # layer -> the map's (h, w)

    def add(self, layer: str, photo: int, found: dict) -> None:
        """Offer one photo's :func:`peaks` for ``layer``; ties go to the lower photo index.

        The result does not depend on the order photos are offered in, so top lists merge
        exactly whichever worker analysed which photos, and in whatever order they finish.
        """
        score = np.asarray(found["peak"], dtype="float64")
        if layer not in self._score:
            c = len(score)
            self._score[layer] = np.full((c, self.k), -np.inf)
            self._photo[layer] = np.full((c, self.k), -1, dtype="int64")
            self._at[layer] = np.zeros((c, self.k, 2))
            self.maps[layer] = list(found["map"])
        scores = np.concatenate([self._score[layer], score[:, None]], axis=1)
        photos = np.concatenate([self._photo[layer], np.full((len(score), 1), photo)], axis=1)
        at = np.concatenate([self._at[layer], np.asarray(found["at"], dtype="float64")[:, None]], axis=1)
        order = np.lexsort((np.where(photos < 0, np.iinfo("int64").max, photos), -scores), axis=1)[:, :self.k]
        self._score[layer] = np.take_along_axis(scores, order, axis=1)
        self._photo[layer] = np.take_along_axis(photos, order, axis=1)
        self._at[layer] = np.take_along_axis(at, order[..., None], axis=1)

    def top(self, layer: str, channel: int) -> list[dict]:
        """``[{"photo", "peak", "at"}]``, strongest first."""
        if layer not in self._score:
            return []
        return [{"photo": int(p), "peak": round(float(s), 4), "at": [round(float(v), 4) for v in a]}
                for s, p, a in zip(self._score[layer][channel], self._photo[layer][channel], self._at[layer][channel])
                if p >= 0]
