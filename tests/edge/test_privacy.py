"""Privacy at the source: downscale and masks before detection; pseudonymous, rotating track ids.
Covers T4 (reduced resolution, areas without the subject not analysed), G1-G5 (images not kept)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.detect import NanoDetDetector
from privaflow.edge.privacy import DAY_MS, PrivacyFilter, PseudonymousIds
from privaflow.edge.tracking import box_iou
from tests.conftest import media_path

PERSON = 0


def test_downscale_keeps_aspect_and_never_upscales() -> None:
    f = PrivacyFilter(max_width=640)
    assert f.apply(np.zeros((576, 768, 3), np.uint8)).shape == (480, 640, 3)
    assert f.apply(np.zeros((1080, 1920, 3), np.uint8)).shape == (360, 640, 3)
    small = np.zeros((120, 160, 3), np.uint8)
    assert f.apply(small) is small, "a frame already small enough is masked in place, not copied"


def test_downscale_averages_detail_away() -> None:
    """INTER_AREA: a 1-pixel checkerboard becomes flat grey, not aliased stripes."""
    board = (np.indices((480, 1280)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = PrivacyFilter(max_width=640).apply(cv2.merge([board] * 3))
    assert out.std() < 2 and abs(out.mean() - 127.5) < 2


@settings(max_examples=60, deadline=None)
@given(x0=st.floats(0, 0.8), y0=st.floats(0, 0.8), w=st.floats(0.05, 0.2), h=st.floats(0.05, 0.2),
       width=st.sampled_from([320, 640, 1024]))
def test_every_pixel_inside_a_mask_is_black(x0: float, y0: float, w: float, h: float, width: int) -> None:
    x1, y1 = min(x0 + w, 1.0), min(y0 + h, 1.0)
    f = PrivacyFilter(max_width=640, masks=[[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]])
    frame = np.full((width * 3 // 4, width, 3), 200, np.uint8)
    out = f.apply(frame)
    oh, ow = out.shape[:2]
    inside = out[int(np.ceil(y0 * oh)): int(y1 * oh), int(np.ceil(x0 * ow)): int(x1 * ow)]
    assert inside.size == 0 or inside.max() == 0
    # and nothing well outside the polygon is touched
    keep = np.ones((oh, ow), bool)
    rows = slice(max(0, int(y0 * oh) - 2), int(np.ceil(y1 * oh)) + 2)
    keep[rows, max(0, int(x0 * ow) - 2): int(np.ceil(x1 * ow)) + 2] = False
    assert (out[keep] == 200).all()


def test_mask_touching_the_border_covers_the_last_row_and_column() -> None:
    f = PrivacyFilter(max_width=640, masks=[[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)]])
    out = f.apply(np.full((480, 640, 3), 255, np.uint8))
    assert out[240:, 320:].max() == 0 and out[:239, :].min() == 255


def test_a_person_inside_a_mask_is_not_detected() -> None:
    """Real footage: find people in a vtest.avi frame, mask one of them, and they are gone (T4)."""
    cap = cv2.VideoCapture(str(media_path("vtest.avi")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, raw = cap.read()
    cap.release()
    assert ok
    detector = NanoDetDetector(classes=[PERSON], conf_threshold=0.35)
    plain = PrivacyFilter(640).apply(raw.copy())
    people = detector(plain)
    assert len(people) >= 3, "the fixture frame shows several people"
    target = people.xyxy[int(np.argmax(people.confidence))]
    h, w = plain.shape[:2]
    pad = 6
    x1, y1 = max(0, target[0] - pad) / w, max(0, target[1] - pad) / h
    x2, y2 = min(w, target[2] + pad) / w, min(h, target[3] + pad) / h
    masked = PrivacyFilter(640, masks=[[(x1, y1), (x2, y1), (x2, y2), (x1, y2)]]).apply(raw.copy())
    after = detector(masked)
    assert len(after) >= len(people) - 2, "the others are still seen"
    overlap = box_iou(target[None], after.xyxy)
    assert overlap.size == 0 or overlap.max() < 0.1, "nothing is detected where the mask is"


# ---------------------------------------------------------------- pseudonymous track ids

NOON = 1_760_000_000_000 // DAY_MS * DAY_MS + DAY_MS // 2


def test_ids_are_stable_within_a_session_and_day() -> None:
    ids = PseudonymousIds()
    a = ids([1, 2, 3], NOON)
    b = ids([3, 1], NOON + 3_600_000)
    assert b.tolist() == [a[2], a[0]]
    assert len(set(a.tolist())) == 3


def test_ids_are_48_bit_and_say_nothing_about_order() -> None:
    out = PseudonymousIds()(np.arange(1, 201), NOON)
    assert out.min() >= 0 and out.max() < 2**48
    assert len(set(out.tolist())) == 200
    assert not (np.all(np.diff(out) > 0) or np.all(np.diff(out) < 0)), "not monotonic in the tracker counter"
    assert len(set(np.diff(out).tolist())) > 150, "not a constant offset from the counter"


def test_a_restart_draws_new_ids() -> None:
    first, second = PseudonymousIds()([1, 2, 3], NOON), PseudonymousIds()([1, 2, 3], NOON)
    assert not set(first.tolist()) & set(second.tolist())


def test_ids_rotate_at_the_utc_day_boundary() -> None:
    ids = PseudonymousIds()
    before = ids([1, 2], NOON + DAY_MS // 2 - 1)  # 23:59:59.999 UTC
    after = ids([1, 2], NOON + DAY_MS // 2)  # 00:00:00.000 UTC the next day
    assert ids.rotations == 1
    assert not set(before.tolist()) & set(after.tolist())
    assert ids([1, 2], NOON + DAY_MS // 2 + 1000).tolist() == after.tolist(), "stable again within the new day"


def test_ids_come_from_a_random_salt_and_the_counter_only() -> None:
    """Nothing about an object's appearance goes in: given the salt, the id is a function of the counter."""
    salts = iter([b"a" * 16, b"a" * 16])
    one, two = PseudonymousIds(lambda n: next(salts)), PseudonymousIds(lambda n: b"a" * 16)
    assert one([5, 6], NOON).tolist() == two([5, 6], NOON).tolist()


@pytest.mark.parametrize("day_offset", [1, 2, 30])
def test_rotation_happens_on_every_new_day(day_offset: int) -> None:
    ids = PseudonymousIds()
    seen = set(ids([1], NOON).tolist())
    for d in range(1, day_offset + 1):
        new = ids([1], NOON + d * DAY_MS).tolist()
        assert not seen & set(new)
        seen |= set(new)
    assert ids.rotations == day_offset


def test_overlapping_masks_black_out_their_overlap_too() -> None:
    """covers T4: two masks that overlap leave no visible pixel in the overlap."""
    import numpy as np

    from privaflow.edge.privacy import PrivacyFilter

    masks = [[(0.1, 0.1), (0.6, 0.1), (0.6, 0.6), (0.1, 0.6)], [(0.4, 0.4), (0.9, 0.4), (0.9, 0.9), (0.4, 0.9)]]
    f = PrivacyFilter(max_width=100, masks=masks)
    out = f.apply(np.full((100, 100, 3), 255, np.uint8))
    assert out[50, 50].tolist() == [0, 0, 0]  # inside both
    assert out[20, 20].tolist() == [0, 0, 0] and out[80, 80].tolist() == [0, 0, 0]
    assert out[5, 95].tolist() == [255, 255, 255]
