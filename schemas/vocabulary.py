"""The closed vocabularies: every value a partner record may carry in a categorical field, held once.

A partner topic must never carry free text (a plate number, a spreadsheet formula) that an edge
credential slipped into a detection record, so every categorical partner field is an Avro enum whose
symbols are fixed here and written into the .avsc files (`tests/schemas/test_vocabulary.py` checks
they agree). The edge produces the *labels* (`"traffic light"`, `"70+"`); Avro enum symbols must be
Avro names (`[A-Za-z_][A-Za-z0-9_]*`), so each label has exactly one *symbol*, derived once by
`avro_symbol`:

    >>> partner_symbol("class_name", "traffic light"), partner_symbol("age_bracket", "70+")
    ('traffic_light', 'age_70_plus')
    >>> partner_label("age_bracket", "age_20_29")
    '20-29'
    >>> partner_symbol("gender", "plate KA-01-1234")
    Traceback (most recent call last):
    ...
    ValueError: gender 'plate KA-01-1234' is not in the closed vocabulary (female, male, unknown)

A vocabulary's kind is the name of the partner field that carries it (`class_name`, `age_bracket`,
`gender`, `colour`, `colour_family`, `crowding_level`, `level_of_service`, `flow_direction`, `heading`,
`congestion_level`). Adding a label later is a BACKWARD-compatible change of the enum (old records
still read); removing or renaming one is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"

# COCO 2017's 80 detection classes in model index order: the ids every detector of the edge returns,
# and so every object class a table can be keyed by.
OBJECT_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
AGE_BRACKETS: tuple[str, ...] = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
GENDERS: tuple[str, ...] = ("female", "male")
COLOURS: tuple[str, ...] = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink",
                            "brown")
# the occupancy table's levels, as station-gate crowding icons show them (G5); already Avro names
CROWDING_LEVELS: tuple[str, ...] = ("EMPTY", "LOW", "CROWDED", "FULL")
# What the intersection standard counts (T2): motor vehicles on the connected roads, bicycles excluded.
VEHICLE_CLASSES: tuple[str, ...] = ("car", "motorcycle", "bus", "truck")
# Colour families of the vehicle-colour table (T5): white, black, grey (silver) and red and blue cover most
# cars on the road; the rare colours are pooled in `other`, so that a lone yellow car at night is not
# singled out by its colour alone (k-anonymity still applies on top). Every colour of COLOURS has one family.
COLOUR_FAMILY_OF: dict[str, str] = {
    "white": "white", "black": "black", "grey": "grey", "red": "red", "orange": "red", "pink": "red",
    "blue": "blue", "purple": "blue", "green": "other", "yellow": "other", "brown": "other"}
COLOUR_FAMILIES: tuple[str, ...] = ("white", "black", "grey", "red", "blue", "other")
# Level of service of an intersection approach, A (free flow) to F (breakdown); streams/congestion.py
# says from what and by whose thresholds
LEVELS_OF_SERVICE: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")
# whether a vehicle crossed an approach's counting line towards the intersection or away from it
FLOW_DIRECTIONS: tuple[str, ...] = ("entering", "leaving")
# COCO classes that are street structures: what a vehicle-mounted camera surveys for map makers (G4). A
# plugged-in model whose class_map maps more classes onto these names adds to them; nothing else is furniture.
ROAD_FURNITURE: tuple[str, ...] = ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench")
# a probe vehicle's direction of travel in eight compass buckets of 45 degrees, N centred on 0 (road_conditions)
HEADINGS: tuple[str, ...] = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
# the road_conditions table's levels, from probe speed and vehicles ahead (streams/road_conditions.py)
CONGESTION_LEVELS: tuple[str, ...] = ("FREE", "SLOW", "CONGESTED", "JAMMED")

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def avro_symbol(label: str, prefix: str = "") -> str:
    """The Avro enum symbol of a label: `+` reads `plus`, every other run of characters an Avro name
    may not hold becomes `_`, and `prefix` goes in front of a label that starts with a digit."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", label.replace("+", "_plus")).strip("_")
    if s[:1].isdigit():
        s = prefix + s
    if not _AVRO_NAME.fullmatch(s):
        raise ValueError(f"label {label!r} has no Avro symbol (got {s!r})")
    return s


@dataclass(frozen=True)
class Vocabulary:
    """One closed vocabulary: its labels in enum order, the Avro enum that carries it on partner
    topics, and the label <-> symbol mapping (a bijection, checked when the vocabulary is built)."""

    kind: str  # the partner field that carries it
    enum_name: str  # the Avro enum's name (namespace privaflow.partner, from the record)
    labels: tuple[str, ...]
    doc: str
    prefix: str = ""  # put in front of labels that start with a digit
    default: str | None = None  # the enum's default symbol: what an older reader makes of a newer symbol
    _to_symbol: dict[str, str] = field(init=False, repr=False, compare=False)
    _to_label: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        to_symbol = {label: avro_symbol(label, self.prefix) for label in self.labels}
        to_label = {s: label for label, s in to_symbol.items()}
        if len(to_label) != len(self.labels):
            raise ValueError(f"vocabulary {self.kind}: two labels share a symbol ({to_symbol})")
        object.__setattr__(self, "_to_symbol", to_symbol)
        object.__setattr__(self, "_to_label", to_label)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._to_symbol.values())

    def symbol(self, label: str) -> str:
        try:
            return self._to_symbol[label]
        except (KeyError, TypeError):
            raise ValueError(f"{self.kind} {label!r} is not in the closed vocabulary "
                             f"({', '.join(self._short(self.labels))})") from None

    def label(self, symbol: str) -> str:
        try:
            return self._to_label[symbol]
        except (KeyError, TypeError):
            raise ValueError(f"{self.kind} symbol {symbol!r} is not in the closed vocabulary "
                             f"({', '.join(self._short(self.symbols))})") from None

    @staticmethod
    def _short(names: tuple[str, ...]) -> list[str]:
        return list(names) if len(names) <= 12 else [*names[:10], f"... {len(names) - 10} more"]

    def avro_enum(self) -> dict[str, Any]:
        """The enum as it must appear (inline) in a partner .avsc."""
        out: dict[str, Any] = {"type": "enum", "name": self.enum_name, "symbols": list(self.symbols),
                               "doc": self.doc}
        if self.default is not None:
            out["default"] = self.symbol(self.default)
        return out


VOCABULARIES: dict[str, Vocabulary] = {v.kind: v for v in (
    Vocabulary("class_name", "ObjectClass", OBJECT_CLASSES,
               "Object class: one of the 80 COCO classes the edge detectors report (spaces read _)."),
    Vocabulary("age_bracket", "AgeBracket", (*AGE_BRACKETS, UNKNOWN),
               "Estimated age bracket (age_20_29 is 20-29 years, age_70_plus 70 and over) or unknown.",
               prefix="age_", default=UNKNOWN),
    Vocabulary("gender", "Gender", (*GENDERS, UNKNOWN), "Estimated gender or unknown.", default=UNKNOWN),
    Vocabulary("colour", "Colour", COLOURS, "Dominant vehicle colour, one of eleven named colours."),
    Vocabulary("crowding_level", "CrowdingLevel", CROWDING_LEVELS,
               "Four levels as shown by icons at station gates."),
    Vocabulary("colour_family", "ColourFamily", (*COLOUR_FAMILIES, UNKNOWN),
               "Vehicle colour family (white, black, grey, red, blue; the rarer colours pooled as other) or "
               "unknown.", default=UNKNOWN),
    Vocabulary("level_of_service", "LevelOfService", LEVELS_OF_SERVICE,
               "Level of service of an approach, A (little delay) to F (long delays), from its delay per vehicle."),
    Vocabulary("flow_direction", "FlowDirection", FLOW_DIRECTIONS,
               "Whether the vehicles entered the intersection on this approach or left it."),
    Vocabulary("heading", "Heading", HEADINGS,
               "Direction of travel of the probe vehicles, one of eight 45-degree compass sectors (N is 337.5-22.5)."),
    Vocabulary("congestion_level", "CongestionLevel", CONGESTION_LEVELS,
               "Four road congestion levels from probe speed and vehicles ahead."),
)}


def colour_family(colour: str | None) -> str:
    """The colour family of a colour label (None or a label outside COLOURS: `unknown`).

    >>> colour_family("pink"), colour_family(None)
    ('red', 'unknown')
    """
    return COLOUR_FAMILY_OF.get(colour, UNKNOWN) if colour is not None else UNKNOWN


def heading_bucket(degrees: float) -> str:
    """The compass sector of a heading in degrees clockwise from north: 0 -> N, 44.9 -> NE, 350 -> N."""
    return HEADINGS[int(((degrees % 360.0) + 22.5) // 45.0) % 8]


def vocabulary(kind: str) -> Vocabulary:
    """The vocabulary carried by partner field `kind`; ValueError naming the known kinds."""
    try:
        return VOCABULARIES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"no closed vocabulary {kind!r}; known: {', '.join(VOCABULARIES)}") from None


def partner_symbol(kind: str, label: str) -> str:
    """The Avro enum symbol a partner record carries for `label`; ValueError naming the value (and
    the vocabulary) for anything outside it, which the caller must treat as a dead letter."""
    return vocabulary(kind).symbol(label)


def partner_label(kind: str, symbol: str) -> str:
    """The label of a symbol read from a partner record (the inverse of `partner_symbol`)."""
    return vocabulary(kind).label(symbol)


def partner_symbols(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a partner record with every vocabulary field (by name) turned from label to symbol;
    None stays None. ValueError, naming field and value, for a label outside its vocabulary."""
    out = dict(record)
    for kind, value in record.items():
        if kind in VOCABULARIES and value is not None:
            out[kind] = partner_symbol(kind, value)
    return out
