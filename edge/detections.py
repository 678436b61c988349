"""The one container that flows through edge/: `supervision.Detections`, used as is.

We adopt supervision's class instead of a look-alike so that ByteTrack, line and polygon zones
take detector output without conversion glue. This module fixes the column dtypes we promise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from supervision import Detections

__all__ = ["Detections", "make_detections"]


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
