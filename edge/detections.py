"""The one container that flows through edge/: `supervision.Detections`, used as is.

We adopt supervision's class instead of a look-alike so that ByteTrack, line and polygon zones
take detector output without conversion glue. This module fixes the column dtypes we promise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from supervision import Detections

__all__ = ["Detections", "box_iou", "make_detections"]


def make_detections(xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike) -> Detections:
    """Build detections with our dtypes: xyxy (n,4) float32 in frame pixels, confidence (n,)
    float32, class_id (n,) int32 COCO ids; tracker_id stays None until a tracker sets it.

    >>> d = make_detections([[0, 0, 10, 10]], [0.9], [0])
    >>> len(d), d.xyxy.dtype.name, d.class_id.dtype.name
    (1, 'float32', 'int32')
    """
    return Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray(confidence, dtype=np.float32).reshape(-1),
        class_id=np.asarray(class_id, dtype=np.int32).reshape(-1),
    )

def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(n, m) IoU of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    out: npt.NDArray[np.float64] = inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
    return out
