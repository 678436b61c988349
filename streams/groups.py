"""Cells that add up to a total another table publishes, withheld together (rule (c) of
docs/privacy-model.md for the tables of issue 17, until streams/disclosure.py applies one policy to
every table).

A line's vehicle colours (per direction, class and window) add up to its traffic volume; the turning
movements from an approach add up to at most its entering volume. A partner holding the total and the
published cells knows the withheld remainder, so withholding only the counts below k would hand it a
lone withheld count exactly. A table names such a group of its dimensions (`TableSpec.group`); when a
window closes, every cell learns its group's counts (`with_group_counts`), and its partner record
withholds it if `complementary_suppression` says so for the partner's k (`grouped_fields`). Every cell
of a group takes the same decision from the same counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class _Spec(Protocol):
    @property
    def group(self) -> tuple[str, ...]: ...

    @property
    def dim_names(self) -> tuple[str, ...]: ...


class _Cell(Protocol):
    @property
    def dims(self) -> tuple[str, ...]: ...

    @property
    def agg(self) -> dict[str, Any]: ...


def complementary_suppression(counts: Sequence[int], k: int) -> set[int]:
    """Indices of the counts to withhold in a group whose total is published: every count in 1..k-1,
    and, if any, further counts (smallest first, then by position) until at least two are withheld and
    they hold at least k between them (or all are). What a partner can then work out, the published
    total minus the published counts, is the sum of two or more withheld counts, and at least k.
    Our own rule (cell suppression with one complementary pass, as statistical offices do for tables
    with published margins), because no library we use implements it for streaming windows.

    >>> sorted(complementary_suppression([1, 6, 9], 5)), sorted(complementary_suppression([3, 4, 9], 5))
    ([0, 1], [0, 1])
    >>> sorted(complementary_suppression([5, 6], 5))
    []
    """
    withheld = {i for i, c in enumerate(counts) if 0 < c < k}
    if not withheld:
        return withheld
    rest = sorted((c, i) for i, c in enumerate(counts) if i not in withheld and c > 0)
    while rest and (len(withheld) < 2 or sum(counts[i] for i in withheld) < k):
        withheld.add(rest.pop(0)[1])
    return withheld


def with_group_counts(spec: _Spec, closed: list[Any]) -> list[Any]:
    """For a table with a `group`: every closed cell's statistics also get the counts of its group's
    cells (`group`, in dims order) and its place among them (`group_index`), for `grouped_fields`.
    `closed` are the cells of one table and one window."""
    if not spec.group or not closed:
        return closed
    at = [spec.dim_names.index(d) for d in spec.group]
    groups: dict[tuple[str, ...], list[_Cell]] = {}
    for c in closed:
        groups.setdefault(tuple(c.dims[i] for i in at), []).append(c)
    for members in groups.values():
        counts = [int(c.agg["count"]) for c in members]
        for i, c in enumerate(members):
            c.agg["group"], c.agg["group_index"] = counts, i
    return closed


def grouped_fields(agg: dict[str, Any], k: int) -> dict[str, Any]:
    """The partner fields of a grouped count: withheld (null, suppressed) when its group's
    `complementary_suppression` withholds it. A cell without group counts is a group of one."""
    group, index = agg.get("group", [agg["count"]]), agg.get("group_index", 0)
    if index in complementary_suppression(list(group), k):
        return {"count": None, "suppressed": True}
    return {"count": int(agg["count"]), "suppressed": False}
