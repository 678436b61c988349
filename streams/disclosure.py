"""The disclosure policy: what of a closed window a partner may receive (docs/privacy-model.md).

Written once and applied to every partner table; a partner record cannot be built any other way
(`streams.partners` only assembles what this module released). The policy reads what each partner
field *is* from the table's partner schema, through the allowlist (`schemas.privacy.field_kind`: a
count, a statistic, bins, a level, a flag, a dimension, the window), and what it rests on from the
table's spec (`streams.tables.TableSpec`: the tracks behind each contribution, which agg key counts
the objects a statistic rests on, whether a row exists whoever was there). No table has rules of its
own.

k-anonymity (the shared topic of each table, under the largest k of the partners receiving it):

- (a) a value computed from fewer than k distinct objects (tracks) is never published: a row needs
  k objects; a statistic needs k objects behind it (else null, `suppressed`); a bin needs k objects
  in it (else null, zero included). The crowding level is always published (G5).
- (b) a row below k is absent, not a null row: absence means "fewer than k, possibly none". Rows
  that exist whoever was there (occupancy: one per zone and analysed window) are always published.
- (c) no withheld value can be recomputed: the parts of a total published elsewhere give way when
  the total minus the published parts would be 1..k-1 (`OVERLAPS`: attributes at a line against the
  persons of traffic_volume at that line, over windows that tile each other); after a change of a
  table's window length, no window overlapping one published at another length is published
  (`DisclosureState.lengths`); a closed window is released once, and a replay releases the same
  values (the policy is a function of the window and the state checkpointed with it).

Differential privacy (a topic per partner, `schemas.topics.dp_topic_name`):

- every window of a table, whoever was there, as the full grid of cells the site config defines for
  the camera (`grid`), zeros included (rule b);
- each track adds at most `contributions_per_window` to a table's grid per window (`bounded`); the
  vector of counts gets discrete Laplace noise drawn by OpenDP, calibrated to that L1 bound
  (`streams.noise.noisy_counts`), clamped to 0;
- a window released once is released again exactly as it was, from the release book
  (`streams.releases`, `Policy.book`): a replay after a crash neither draws anew nor spends again.
  A window not in the book is drawn, added to it and put in `Released.outbox`, which the publisher
  makes durable before any partner record (streams/publish.py);
- statistics are withheld, except those with a mechanism of their own (`TableSpec.dp_statistics`:
  occupancy's p95, which one person moves by at most 1 per zone); levels derive from released values;
- each table window spends the partner's per-window epsilon of its daily budget for that camera
  (`streams.budget.EpsilonLedger`, in the camera's checkpointed state); a window that would overspend
  publishes nothing and is counted in `Released.withheld` (the worker's metric and log).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from privaflow.schemas.codec import load_schema
from privaflow.schemas.privacy import field_kind
from privaflow.schemas.site import Partner, SiteConfig
from privaflow.schemas.topics import (
    OPERATOR_PREFIX,
    PARTNER_TABLES,
    dp_topic_name,
    operator_topic_name,
    partner_topic_name,
)
from privaflow.schemas.vocabulary import (
    AGE_BRACKETS,
    COLOUR_FAMILIES,
    FLOW_DIRECTIONS,
    GENDERS,
    UNKNOWN,
    partner_symbol,
)
from privaflow.streams.budget import EpsilonLedger, utc_day
from privaflow.streams.noise import noisy_counts
from privaflow.streams.partners import partner_key, partner_value, strictest_k
from privaflow.streams.releases import DpRelease, ReleaseBook
from privaflow.streams.tables import SPECS, ClosedWindow, Dims, TableSpec, WindowContext, camera_tables

log = logging.getLogger(__name__)

STATE_VERSION = 1
DAY_MS = 86_400_000


# ---------------------------------------------------------------- what each field is


@cache
def field_kinds(table: str) -> dict[str, str]:
    """Partner field -> kind: the allowlist's kind (schemas/privacy.py), with a table's own key
    dimensions as `dimension` and a vocabulary field that is not a dimension as `level`."""
    dims = set(SPECS[table].dim_names)
    out: dict[str, str] = {}
    for f in load_schema(PARTNER_TABLES[table])["fields"]:
        kind = field_kind(f["name"])
        if f["name"] in dims:
            kind = "dimension"
        elif kind == "vocabulary":
            kind = "level"
        elif kind == "id":
            kind = "site"  # the one id that is not a key dimension
        out[f["name"]] = kind
    return out


# ---------------------------------------------------------------- released records


@dataclass(frozen=True, slots=True)
class Release:
    """One record for one topic (canonical name, without a test prefix); `value` carries enum symbols."""

    topic: str
    key: str
    value: dict[str, Any]


@dataclass
class Released:
    """What one call of `Disclosure.release` let out."""

    records: list[Release] = field(default_factory=list)
    # (partner, table) -> DP windows not published because the day's budget was spent
    withheld: dict[tuple[str, str], int] = field(default_factory=dict)
    # (partner, table) -> epsilon spent on the windows published now
    spent: dict[tuple[str, str], float] = field(default_factory=dict)
    # DP windows drawn now (not republished from the release book): to be made durable on the book's
    # topic before any of `records` is sent (streams/publish.py)
    outbox: list[DpRelease] = field(default_factory=list)

    def extend(self, other: Released) -> None:
        self.records += other.records
        self.outbox += other.outbox
        for k, n in other.withheld.items():
            self.withheld[k] = self.withheld.get(k, 0) + n
        for k, e in other.spent.items():
            self.spent[k] = self.spent.get(k, 0.0) + e


_VALUES = ("count", "statistic", "level", "bin_edges", "bins", "class_counts")


def _value(closed: ClosedWindow, name: str, kind: str) -> Any:
    """A field's value as the partner schema wants it (a class list as the vocabulary's symbols)."""
    value = closed.agg.get(name)
    if kind == "class_list":
        return [partner_symbol("class_name", c) for c in value or []]
    if kind == "class_counts":
        return list(value or [])
    return value


def operator_value(closed: ClosedWindow) -> dict[str, Any]:
    """The operator's record of a closed window: every field exact, no rule applied (never for a
    partner: it goes to the operator topics, readable by the api role only)."""
    kinds = field_kinds(closed.table)
    fields: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind in (*_VALUES, "class_list"):
            fields[name] = _value(closed, name, kind)
        elif kind == "flag":
            fields[name] = False
    return partner_value(closed, fields)


def cell_objects(spec: TableSpec, closed: ClosedWindow) -> int:
    """What k counts for a cell: its distinct tracks, or the distinct trips its aggregate names."""
    return closed.objects if spec.k_unit == "objects" else int(closed.agg.get(spec.k_unit) or 0)


def _support(spec: TableSpec, closed: ClosedWindow, statistic: str) -> int | None:
    key = spec.support.get(statistic, "objects")
    if key is None:
        return None
    return cell_objects(spec, closed) if key == "objects" else int(closed.agg.get(key) or 0)


def _bin_objects(closed: ClosedWindow, bins: int) -> list[int]:
    seen: list[set[int]] = [set() for _ in range(bins)]
    for track, slot in zip(closed.tracks, closed.slots, strict=True):
        seen[slot].add(track)
    return [len(s) for s in seen]


def k_anonymous_fields(closed: ClosedWindow, k: int) -> dict[str, Any] | None:
    """Rules (a) and (b) for one cell under threshold k: the record's fields other than site, key
    dimensions and window, or None when the row is not published at all."""
    if k < 1:
        raise ValueError(f"k-anonymity threshold must be at least 1, got {k}")
    spec = SPECS[closed.table]
    if not spec.always_present and cell_objects(spec, closed) < k:
        return None
    out: dict[str, Any] = {}
    withheld = False
    for name, kind in field_kinds(closed.table).items():
        value = closed.agg.get(name)
        if kind in ("class_list", "class_counts"):
            out[name] = _value(closed, name, kind)  # what the row's k objects passed (road furniture)
        elif kind == "count":
            # a row has k objects (and a count of at least as many contributions), except one that exists
            # whoever was there (congestion: one per approach and window): its count then needs k too
            published = cell_objects(spec, closed) >= k
            out[name] = value if published else None
            withheld = withheld or not published
        elif kind == "bins":
            bins: list[int] = list(value or [])
            objects = _bin_objects(closed, len(bins))
            out[name] = [v if n >= k else None for v, n in zip(bins, objects, strict=True)]
            withheld = withheld or any(v is None for v in out[name])
        elif kind == "statistic" or kind == "level" and name in spec.support:
            support = _support(spec, closed, name)
            published = support is None or support >= k
            out[name] = value if published else None
            withheld = withheld or not published
        elif kind in ("level", "bin_edges"):
            out[name] = value
    for name, kind in field_kinds(closed.table).items():
        if kind == "flag":
            out[name] = withheld
    return out


def k_anonymous_record(closed: ClosedWindow, k: int) -> tuple[str, dict[str, Any]] | None:
    """(key, value) of one cell under threshold k (rules a, b), or None when the row is not published;
    ValueError for a cell that can have no partner record (a label outside its vocabulary, a spatial
    cell that is not an H3 index). For a table released outside the per-camera state (road_conditions,
    over a whole fleet) and for tests; the worker's tables go through `Disclosure`."""
    fields = k_anonymous_fields(closed, k)
    return None if fields is None else (partner_key(closed), partner_value(closed, fields))


# ---------------------------------------------------------------- differential privacy


def dim_values(kind: str, site: SiteConfig, camera_id: str, line: str | None = None,
               intersection: str | None = None) -> tuple[str, ...]:
    """Every value a key dimension of this kind may take for a camera, from the site config alone
    (never from what was seen): the DP grid. A direction's values are those of `line`, an approach's
    those of `intersection` that the camera watches."""
    cam = site.camera(camera_id)
    watched = site.approaches_for(camera_id)
    if kind == "intersection":
        return tuple(dict.fromkeys(x.id for x, _a in watched))
    if kind == "approach":
        return tuple(a.id for x, a in watched if x.id == intersection)
    if kind == "flow_direction":
        return FLOW_DIRECTIONS
    if kind == "colour_family":
        return (*COLOUR_FAMILIES, UNKNOWN)
    lines = tuple(ln.id for ln in site.lines_for(camera_id))
    zones = tuple(z.id for z in site.zones_for(camera_id))
    if kind == "line":
        return lines
    if kind == "zone":
        return zones
    if kind == "place":
        return (*lines, *zones) if cam.attributes else ()
    if kind == "direction":
        return next((tuple(ln.directions) for ln in site.lines_for(camera_id) if ln.id == line), ())
    if kind == "class":
        return tuple(cam.classes)
    if kind == "age_bracket":
        return (*AGE_BRACKETS, UNKNOWN)
    if kind == "gender":
        return (*GENDERS, UNKNOWN)
    raise ValueError(f"no grid for dimension kind {kind!r}")


def grid(table: str, site: SiteConfig, camera_id: str) -> list[Dims]:
    """Every cell of a table's window for a camera, in a fixed order (a direction's values are its line's)."""
    spec = SPECS[table]
    cells: list[Dims] = [()]
    for dim in spec.dims:
        nxt: list[Dims] = []
        for prefix in cells:
            line = next((v for d, v in zip(spec.dims, prefix, strict=False) if d.kind == "line"), None)
            x = next((v for d, v in zip(spec.dims, prefix, strict=False) if d.kind == "intersection"), None)
            nxt += [(*prefix, v) for v in dim_values(dim.kind, site, camera_id, line, x)]
        cells = nxt
    return cells


def bounded(cells: list[ClosedWindow | None], slots: list[int], bound: int) -> list[list[int]]:
    """Per cell (in grid order), per slot: the contributions kept when each track may add at most
    `bound` to the whole grid (the first ones in grid order and, within a cell, in arrival order)."""
    used: dict[int, int] = {}
    out: list[list[int]] = []
    for cell, n_slots in zip(cells, slots, strict=True):
        counts = [0] * n_slots
        if cell is not None:
            for track, slot in zip(cell.tracks, cell.slots, strict=True):
                if used.get(track, 0) < bound:
                    used[track] = used.get(track, 0) + 1
                    counts[slot] += 1
        out.append(counts)
    return out


def dp_fields(table: str, site: SiteConfig, camera_id: str, cells: Mapping[Dims, ClosedWindow], epsilon: float,
              bound: int, ctx: WindowContext) -> list[tuple[Dims, dict[str, Any]]]:
    """One window of a table as the full grid with noise (a fresh OpenDP draw at every call): (dims,
    fields) per cell."""
    spec = SPECS[table]
    kinds = field_kinds(table)
    dims_list = grid(table, site, camera_id)
    ordered = [cells.get(d) for d in dims_list]
    bins = next((n for n, k in kinds.items() if k == "bins"), None)
    n_bins = len(ctx.dwell_bins) + 1 if bins else 1
    counted = any(k in ("count", "bins") for k in kinds.values())
    noisy: list[list[int]] = [[] for _ in dims_list]
    if counted:
        true = bounded(ordered, [n_bins] * len(ordered), bound)
        flat = [c for row in true for c in row]
        released = noisy_counts(flat, bound, epsilon)
        noisy = [released[i * n_bins:(i + 1) * n_bins] for i in range(len(dims_list))]
    stats: dict[str, list[int]] = {}
    for name, per_cell in spec.dp_statistics.items():
        # floor: an integer that one person moves by at most `per_cell`; a person may be in every cell
        true_stat = [int((c.agg.get(name) or 0) // 1) if c is not None else 0 for c in ordered]
        stats[name] = noisy_counts(true_stat, per_cell * max(1, len(ordered)), epsilon)
    out = []
    for i, dims in enumerate(dims_list):
        cell = ordered[i]
        f: dict[str, Any] = {}
        withheld = False
        for name, kind in kinds.items():
            if kind == "count":
                f[name] = noisy[i][0]
            elif kind == "bins":
                f[name] = noisy[i]
            elif kind == "bin_edges":
                f[name] = [*ctx.dwell_bins, float("inf")]
            elif kind == "statistic":
                if name in stats:
                    f[name] = float(stats[name][i])
                elif spec.support.get(name, "objects") is None:
                    f[name] = (cell.agg.get(name) if cell is not None else 0) or 0  # not about objects
                else:
                    f[name] = None
                    withheld = True
        f.update(spec.derive(f, dims, ctx))
        for name, kind in kinds.items():
            if kind == "flag":
                f[name] = withheld
        out.append((dims, f))
    return out


# ---------------------------------------------------------------- consistency across tables


@dataclass(frozen=True)
class Overlap:
    """Cells of `parts` at a place (the values of its `parts_place` dims) count a subset of the objects
    counted by the cells of `total` at that place (its `total_place` dims) whose `total_filter` dims
    match (summed over the total's other dims). Published parts subtracted from a published total bound
    the withheld parts: the policy keeps that difference at 0 or at least k. Only parts whose place
    (its line, approach or place dimension) is a `place_kind` item of the site have a total."""

    parts: str
    parts_place: tuple[str, ...]
    total: str
    total_place: tuple[str, ...]
    total_filter: Mapping[str, str]
    place_kind: str = "line"


OVERLAPS = (
    # visitors' attributes at a line are estimated on the people who crossed it (either way)
    Overlap("attributes", ("place_id",), "traffic_volume", ("line_id",), {"class_name": "person"}),
    # a line's vehicle colours (per direction and class) add up to its traffic volume
    Overlap("vehicle_colours", ("line_id", "direction", "class_name"), "traffic_volume",
            ("line_id", "direction", "class_name"), {}),
    # the turning movements from an approach (per class) add up to at most its entering volume
    Overlap("turning_movements", ("intersection_id", "entry_approach_id", "class_name"), "intersection_volume",
            ("intersection_id", "approach_id", "class_name"), {"flow_direction": "entering"}, place_kind="approach"),
    # ... and the movements into an approach to at most its leaving volume
    Overlap("turning_movements", ("intersection_id", "exit_approach_id", "class_name"), "intersection_volume",
            ("intersection_id", "approach_id", "class_name"), {"flow_direction": "leaving"}, place_kind="approach"),
)


def _site_items(site: SiteConfig, kind: str) -> set[str]:
    if kind == "line":
        return {ln.id for ln in site.lines}
    return {a.id for x in site.intersections for a in x.approaches}


# ---------------------------------------------------------------- the policy and its state


class Policy:
    """The site's disclosure settings, derived from its config once, and the book of its DP releases
    (shared by the worker's cameras; loaded from Kafka by the worker, empty by default)."""

    def __init__(self, site: SiteConfig, book: ReleaseBook | None = None) -> None:
        self.site = site
        self.ctx = WindowContext.of(site)
        # the shared topic of each table carries the strictest k of its k-anonymity partners
        self.k: dict[str, int] = strictest_k(site)
        self.dp_partners: list[Partner] = [p for p in site.partners if p.dp]
        self.epsilon = {p.id: p.epsilon_per_window(site.windows) for p in self.dp_partners}
        self.budgets = {p.id: float(p.privacy.epsilon_per_day or 0) for p in self.dp_partners}
        self.size_ms = {t: s.window_s(site) * 1000 for t, s in SPECS.items()}
        self.site_items = {kind: _site_items(site, kind) for kind in ("line", "approach")}  # OVERLAPS' places
        self.grace_ms = site.windows.grace_s * 1000
        self.book = book if book is not None else ReleaseBook(site.site_id)


class Disclosure:
    """The policy applied to one camera's closed windows, with the state it needs between windows
    (kept in the camera's checkpointed state: `to_state`/`from_state`)."""

    def __init__(self, policy: Policy, camera_id: str, state: Mapping[str, Any] | None = None) -> None:
        self.policy, self.camera_id = policy, camera_id
        self.tables = camera_tables(policy.site, camera_id)
        state = state or {}
        if state and state.get("version") != STATE_VERSION:
            raise ValueError(f"disclosure state version {state.get('version')!r} is not {STATE_VERSION}")
        # table -> [end of the newest window published at its length, that length in ms]
        self.lengths: dict[str, list[int]] = {t: list(v) for t, v in state.get("lengths", {}).items()}
        # overlap index -> "totals"/"parts" -> place -> window start -> published sum
        self.overlaps: dict[str, dict[str, dict[str, dict[str, int]]]] = {
            i: {side: {place: dict(v) for place, v in by_place.items()} for side, by_place in sides.items()}
            for i, sides in state.get("overlaps", {}).items()}
        # partner -> table -> [start of the next window to release, its length in ms]
        self.cursors: dict[str, dict[str, list[int]]] = {p: {t: list(c) for t, c in ts.items()}
                                                          for p, ts in state.get("cursors", {}).items()}
        self.ledger = (EpsilonLedger.from_state(policy.budgets, state["ledger"]) if state.get("ledger")
                       else EpsilonLedger(policy.budgets))

    def to_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "lengths": {t: list(v) for t, v in self.lengths.items()},
                "overlaps": {i: {side: {place: dict(v) for place, v in by_place.items()}
                                 for side, by_place in sides.items()} for i, sides in self.overlaps.items()},
                "cursors": {p: {t: list(c) for t, c in ts.items()} for p, ts in self.cursors.items()},
                "ledger": self.ledger.to_state()}

    # ------------------------------------------------------------ the one entry point

    def release(self, closed: list[ClosedWindow], watermark_ms: int | None) -> Released:
        """Everything partners may receive of these closed windows (one `WindowStore.close` call of
        this camera, at `watermark_ms`), and the operator's unsuppressed records."""
        out = Released()
        out.records += [Release(operator_topic_name(c.table), partner_key(c), v) for c in closed
                        if (v := _symbols_or_none(lambda c=c: operator_value(c), c)) is not None]
        out.records += self._k_anonymous(closed, watermark_ms)
        if self.policy.dp_partners and watermark_ms is not None:
            out.extend(self._differentially_private(closed, watermark_ms))
        return out

    # ------------------------------------------------------------ k-anonymity

    def _k_anonymous(self, closed: list[ClosedWindow], watermark_ms: int | None) -> list[Release]:
        kept: dict[str, list[tuple[ClosedWindow, dict[str, Any]]]] = {}
        for c in closed:
            k = self.policy.k.get(c.table)
            if k is None or not self._length_allows(c):
                continue
            fields = k_anonymous_fields(c, k)
            if fields is not None:
                kept.setdefault(c.table, []).append((c, fields))
        for i, ov in enumerate(OVERLAPS):
            if ov.parts in self.policy.k and ov.total in self.policy.k:
                self._consistent(str(i), ov, kept, watermark_ms)
        out = []
        for table in kept:
            for c, fields in kept[table]:
                value = _symbols_or_none(lambda c=c, fields=fields: partner_value(c, fields), c)
                if value is not None:
                    out.append(Release(partner_topic_name(table), partner_key(c), value))
        return out

    def _length_allows(self, c: ClosedWindow) -> bool:
        """Rule (c), windows of other lengths: a window overlapping one published at another length is
        never published (whichever is longer, the difference would give the other's withheld cells)."""
        length = c.window_end_ms - c.window_start_ms
        last = self.lengths.get(c.table)
        if last is not None and last[1] != length and c.window_start_ms < last[0]:
            return False
        if last is None or last[1] != length or c.window_end_ms > last[0]:
            self.lengths[c.table] = [max(c.window_end_ms, last[0] if last else 0), length]
        return True

    def _consistent(self, index: str, ov: Overlap, kept: dict[str, list[tuple[ClosedWindow, dict[str, Any]]]],
                    watermark_ms: int | None) -> None:
        """Rule (c), totals minus parts: withhold parts (or, when the total's windows are the longer
        ones and the parts are out already, total cells) until the derivable withheld mass at each
        place and window is 0 or at least k."""
        k = self.policy.k[ov.parts]
        st = self.overlaps.setdefault(index, {"totals": {}, "parts": {}})
        size_parts, size_total = self.policy.size_ms[ov.parts], self.policy.size_ms[ov.total]
        parts_spec, total_spec = SPECS[ov.parts], SPECS[ov.total]
        p_place = tuple(parts_spec.dim_names.index(d) for d in ov.parts_place)
        t_place = tuple(total_spec.dim_names.index(d) for d in ov.total_place)
        # the place dimension that says whether the total counts a part (a line, an approach; not the intersection)
        checked = next(i for i in p_place if parts_spec.dims[i].kind != "intersection")
        filters = [(total_spec.dim_names.index(d), v) for d, v in ov.total_filter.items()]

        def total_cells() -> list[tuple[ClosedWindow, dict[str, Any]]]:
            return [(c, f) for c, f in kept.get(ov.total, []) if all(c.dims[i] == v for i, v in filters)]

        def parts_cells() -> list[tuple[ClosedWindow, dict[str, Any]]]:
            # only places that the total counts (attributes at a zone have no total)
            items = self.policy.site_items[ov.place_kind]
            return [(c, f) for c, f in kept.get(ov.parts, []) if c.dims[checked] in items]

        def place_of(c: ClosedWindow, place_index: tuple[int, ...]) -> str:
            return "|".join(c.dims[i] for i in place_index)  # ids never hold "|" (schemas/site.py)

        def remember(side: str, cells: list[tuple[ClosedWindow, dict[str, Any]]], place_index: tuple[int, ...]
                     ) -> None:
            for c, f in cells:
                by_start = st[side].setdefault(place_of(c, place_index), {})
                by_start[str(c.window_start_ms)] = by_start.get(str(c.window_start_ms), 0) + int(f["count"] or 0)

        def window_groups(cells: list[tuple[ClosedWindow, dict[str, Any]]], place_index: tuple[int, ...]
                          ) -> Iterator[tuple[int, int, str, list[tuple[ClosedWindow, dict[str, Any]]]]]:
            key = lambda cf: (cf[0].window_start_ms, cf[0].window_end_ms, place_of(cf[0], place_index))  # noqa: E731
            for (start, end, place), group in itertools.groupby(sorted(cells, key=key), key=key):
                yield start, end, place, list(group)

        def covered(side: str, place: str, start: int, end: int) -> int:
            return sum(n for s, n in st[side].get(place, {}).items() if start <= int(s) < end)

        def give_way(table: str, group: list[tuple[ClosedWindow, dict[str, Any]]], difference: int, sign: int) -> None:
            """Withhold the smallest cells of the group until 1 <= difference < k no longer holds."""
            for c, f in sorted(group, key=lambda cf: (int(cf[1]["count"] or 0), cf[0].dims)):
                if not 1 <= difference < k:
                    break
                kept[table].remove((c, f))
                difference += sign * int(f["count"] or 0)

        # windows that are still to close start after this: what was published before them is not needed
        open_from = None if watermark_ms is None else watermark_ms - self.policy.grace_ms - max(size_parts, size_total)
        if size_parts >= size_total:  # the total's windows close first: the parts give way
            remember("totals", total_cells(), t_place)
            for start, end, place, group in window_groups(parts_cells(), p_place):
                published = sum(int(f["count"] or 0) for _, f in group)
                give_way(ov.parts, group, covered("totals", place, start, end) - published, +1)
            _forget(st["totals"], open_from)
        else:  # the parts are out already: the total gives way
            remember("parts", parts_cells(), p_place)
            for start, end, place, group in window_groups(total_cells(), t_place):
                published = sum(int(f["count"] or 0) for _, f in group)
                give_way(ov.total, group, published - covered("parts", place, start, end), -1)
            _forget(st["parts"], open_from)

    # ------------------------------------------------------------ differential privacy

    def _differentially_private(self, closed: list[ClosedWindow], watermark_ms: int) -> Released:
        out = Released()
        policy = self.policy
        by_window: dict[tuple[str, int, int], dict[Dims, ClosedWindow]] = {}
        for c in closed:
            by_window.setdefault((c.table, c.window_start_ms, c.window_end_ms), {})[c.dims] = c
        first_start = {t: min((s for (tt, s, _e) in by_window if tt == t), default=None) for t in self.tables}
        for partner in policy.dp_partners:
            eps = policy.epsilon[partner.id]
            cursors = self.cursors.setdefault(partner.id, {})
            for table in partner.tables:
                if table not in self.tables:
                    continue
                size = policy.size_ms[table]
                cursor = cursors.get(table)
                if cursor is None:  # the camera's first release: from the window holding the watermark
                    start = watermark_ms - watermark_ms % size
                    earliest = first_start[table]
                    cursor = [start if earliest is None else min(start, earliest), size]
                elif cursor[1] != size:  # the window length changed: the next aligned window after the last
                    cursor = [-(-cursor[0] // size) * size, size]
                start = cursor[0]
                while start + size + policy.grace_ms <= watermark_ms:
                    day = utc_day(start)
                    stored = policy.book.get((partner.id, table, self.camera_id, start, size))
                    if stored is not None:
                        # released before a crash: the same values again, no new draw; the checkpointed
                        # ledger predates that release, so it is counted now (once, whatever the budget)
                        self.ledger.charge(partner.id, day, stored.epsilon)
                        out.records += self._dp_records(stored)
                    elif self.ledger.try_spend(partner.id, day, eps):
                        out.spent[(partner.id, table)] = out.spent.get((partner.id, table), 0.0) + eps
                        release = self._dp_window(partner, table, start, size,
                                                  by_window.get((table, start, start + size), {}), eps)
                        policy.book.add(release)
                        out.outbox.append(release)
                        out.records += self._dp_records(release)
                    else:
                        out.withheld[(partner.id, table)] = out.withheld.get((partner.id, table), 0) + 1
                        if self.ledger.refused.get(partner.id, {}).get(day) == 1:  # once a day and camera
                            log.warning("partner %s: the daily epsilon budget (%g) of camera %s is spent for %s: "
                                        "no more windows are published to it today (first: %s at %d)", partner.id,
                                        policy.budgets[partner.id], self.camera_id, day, table, start)
                    start += size
                cursors[table] = [start, size]
        days = sorted({utc_day(c[0]) for ts in self.cursors.values() for c in ts.values()})
        if days:
            kept_from = _day_before(days[0])  # keep the current day and the one before
            self.ledger.forget_before(kept_from)
            policy.book.forget(self.camera_id, _day_start_ms(kept_from))  # as its ledger: replays ask no older
        return out

    def _dp_window(self, partner: Partner, table: str, start: int, size: int, cells: Mapping[Dims, ClosedWindow],
                   eps: float) -> DpRelease:
        """One new draw (OpenDP) of a table window's grid for a partner."""
        policy = self.policy
        bound = partner.privacy.contributions_per_window
        grid_fields = dp_fields(table, policy.site, self.camera_id, cells, eps, bound, policy.ctx)
        return DpRelease(policy.site.site_id, partner.id, table, self.camera_id, start, size, eps,
                         tuple((dims, fields) for dims, fields in grid_fields))

    def _dp_records(self, release: DpRelease) -> list[Release]:
        """The partner records of a DP release, new or from the book: the same release, the same records."""
        out = []
        start, end = release.start_ms, release.start_ms + release.length_ms
        for dims, fields in release.cells:
            c = ClosedWindow(release.table, release.site_id, dims, start, end, {})
            value = _symbols_or_none(lambda c=c, fields=dict(fields): partner_value(c, fields), c)
            if value is not None:
                out.append(Release(dp_topic_name(release.partner, release.table), partner_key(c), value))
        return out


def _forget(by_place: dict[str, dict[str, int]], before: int | None) -> None:
    if before is None:
        return
    for place in list(by_place):
        by_place[place] = {s: n for s, n in by_place[place].items() if int(s) >= before}
        if not by_place[place]:
            del by_place[place]


def _day_before(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


def _day_start_ms(day: str) -> int:
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC).timestamp() * 1000)


def _symbols_or_none(build: Any, c: ClosedWindow) -> dict[str, Any] | None:
    """A record with enum symbols, or None (logged) for a cell whose label is outside the closed
    vocabularies: the worker dead-letters such detections, so this is the last line, never a crash."""
    try:
        value: dict[str, Any] = build()
    except ValueError as e:
        log.error("%s cell not published: %s", c.table, e)
        return None
    return value


def camera_of(site: SiteConfig, table: str, dims: Dims) -> str:
    """The camera a cell belongs to: the one of its line, zone or approach (each belongs to one camera)."""
    spec = SPECS[table]
    place = next(v for d, v in zip(spec.dims, dims, strict=True) if d.kind in ("line", "zone", "place", "approach"))
    for x in site.intersections:
        for a in x.approaches:
            if a.id == place:
                return a.camera
    for line in site.lines:
        if line.id == place:
            return line.camera
    for zone in site.zones:
        if zone.id == place:
            return zone.camera
    raise ValueError(f"{table} cell {dims!r}: {place!r} is no line, zone or approach of the site")


def records_for_partners(closed: Iterable[ClosedWindow], site: SiteConfig, watermark_ms: int | None = None,
                         policy: Policy | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Partner topic -> (key, value), for closed windows released in one go by fresh camera states (as
    a worker that starts with them would): for tests and tools. Operator topics are left out."""
    policy = policy or Policy(site)
    by_camera: dict[str, list[ClosedWindow]] = {}
    for c in closed:
        by_camera.setdefault(camera_of(site, c.table, c.dims), []).append(c)
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for cam, cells in by_camera.items():
        cells.sort(key=lambda c: (c.window_start_ms, c.table, c.dims))
        wm = watermark_ms if watermark_ms is not None else max(c.window_end_ms for c in cells) + policy.grace_ms
        for r in Disclosure(policy, cam).release(cells, wm).records:
            if not r.topic.startswith(OPERATOR_PREFIX):
                out.setdefault(r.topic, []).append((r.key, r.value))
    return out
