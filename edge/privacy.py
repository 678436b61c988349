"""Privacy at the source: what happens to a frame before anything looks at it, and the
pseudonymous track ids that are the only link between observations.

`PrivacyFilter` downscales to the camera's `max_width` and blacks out its privacy masks, so no
later stage (detector, tracker, colour naming) can see a masked pixel or more detail than the
operator allowed (T4, G4). Frames live only in memory; nothing in edge/ writes one anywhere.

    >>> import numpy as np
    >>> f = PrivacyFilter(max_width=320, masks=[[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]])
    >>> out = f.apply(np.full((480, 640, 3), 255, np.uint8))
    >>> out.shape, int(out[:, :150].max()), int(out[:, 170:].min())
    ((240, 320, 3), 0, 255)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import numpy.typing as npt

Polygon = Sequence[tuple[float, float]]
DAY_MS = 86_400_000


class PrivacyFilter:
    """Downscale (aspect kept, INTER_AREA, never upscale) then fill mask polygons with black.

    Mask coordinates are normalised 0..1 of the frame; the pixel polygons are computed once per
    frame size. `apply` masks in place when no resize is needed and returns the frame to analyse.
    """

    def __init__(self, max_width: int, masks: Sequence[Polygon] = ()) -> None:
        self.max_width = max_width
        self.masks = [np.asarray(m, np.float64).reshape(-1, 2) for m in masks]
        self._pixels: dict[tuple[int, int], list[npt.NDArray[np.int32]]] = {}

    def apply(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if w > self.max_width:
            new_h = max(1, round(h * self.max_width / w))
            frame = cv2.resize(frame, (self.max_width, new_h), interpolation=cv2.INTER_AREA)
            h, w = frame.shape[:2]
        # one fillPoly per polygon: a single call over several fills by even-odd, so the overlap
        # of two masks would stay visible
        for poly in self._polygons(w, h):
            cv2.fillPoly(frame, [poly], (0, 0, 0))
        return frame

    def _polygons(self, w: int, h: int) -> list[npt.NDArray[np.int32]]:
        if (w, h) not in self._pixels:
            scale = np.array([w, h], np.float64)
            # Round outwards to whole pixels at the borders: a mask touching 1.0 covers the last column.
            self._pixels[(w, h)] = [np.clip(np.round(m * scale), 0, scale - 1).astype(np.int32)
                                    for m in self.masks]
        return self._pixels[(w, h)]


class PseudonymousIds:
    """Turns the tracker's counter into track ids that mean nothing outside one camera session.

    id = keyed BLAKE2b(salt, tracker id) truncated to 48 bits: random, not ordered, never derived
    from how an object looks. The 16-byte salt is drawn from `secrets` at construction (so every
    restart) and again whenever the event time enters a new UTC day, so ids rotate at least daily.
    """

    BITS = 48

    def __init__(self, salt_source: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._new_salt = salt_source
        self._salt = salt_source(16)
        self._day: int | None = None
        self.rotations = 0

    def __call__(self, tracker_ids: npt.ArrayLike, ts_ms: int) -> npt.NDArray[np.int64]:
        day = ts_ms // DAY_MS
        if self._day is None:
            self._day = day
        elif day != self._day:
            self._salt, self._day = self._new_salt(16), day
            self.rotations += 1
        return np.array([self._one(int(t)) for t in np.asarray(tracker_ids).reshape(-1)], dtype=np.int64)

    def _one(self, tracker_id: int) -> int:
        digest = hashlib.blake2b(tracker_id.to_bytes(8, "little", signed=True), key=self._salt,
                                 digest_size=self.BITS // 8).digest()
        return int.from_bytes(digest, "little")
