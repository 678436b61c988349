"""Closed vocabularies (schemas/vocabulary.py): held once, written into the partner .avsc files as
Avro enums, and covering every label the edge can produce. Issue 12, finding 5: free text from an
edge credential (a plate number, a spreadsheet formula) cannot reach a partner. Covers T6, T7, G1, G5."""

from __future__ import annotations

import io
import re
from typing import Any

import fastavro
import numpy as np
import pytest

from privaflow.edge import attributes as edge_attributes
from privaflow.edge.detections import make_detections
from privaflow.edge.records import COCO_CLASSES, frame_record
from privaflow.schemas.codec import load_schema, parsed_schema
from privaflow.schemas.topics import PARTNER_TABLES
from privaflow.schemas.vocabulary import (
    AGE_BRACKETS,
    COLOURS,
    CROWDING_LEVELS,
    GENDERS,
    OBJECT_CLASSES,
    UNKNOWN,
    VOCABULARIES,
    partner_label,
    partner_symbol,
    partner_symbols,
)
from privaflow.streams.tables import CROWDING_THRESHOLDS
from privaflow.streams.tables import UNKNOWN as TABLES_UNKNOWN
from privaflow_stack import simulate

AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FREE_TEXT = ["KA-01-AB-1234", '=HYPERLINK("http://x","y")', "", " person", "Person", "20 - 29", "unknown "]


def _partner_enums() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for stem in PARTNER_TABLES.values():
        for f in load_schema(stem)["fields"]:
            t = f["type"]
            t = next((b for b in t if b != "null"), t) if isinstance(t, list) else t
            if isinstance(t, dict) and t.get("type") == "array":  # a declared class list
                t = t["items"]
            if isinstance(t, dict) and t.get("type") == "enum":
                out.append((stem, f["name"], t))
    return out


def test_every_categorical_partner_field_is_an_enum_of_its_vocabulary() -> None:
    """The symbols in the .avsc files are exactly the vocabulary module's, in its order."""
    found = {(stem, name) for stem, name, _ in _partner_enums()}
    assert found == {("partner_traffic_volume", "class_name"), ("partner_attributes", "age_bracket"),
                     ("partner_attributes", "gender"), ("partner_occupancy", "crowding_level"),
                     ("partner_congestion", "level_of_service"), ("partner_intersection_volume", "flow_direction"),
                     ("partner_intersection_volume", "class_name"), ("partner_turning_movements", "class_name"),
                     ("partner_vehicle_colours", "class_name"), ("partner_vehicle_colours", "colour_family"),
                     ("partner_road_conditions", "heading"), ("partner_road_conditions", "congestion_level"),
                     ("partner_road_conditions", "furniture_classes")}
    for stem, name, enum in _partner_enums():
        vocab = VOCABULARIES["class_name" if name == "furniture_classes" else name]
        assert enum["name"] == vocab.enum_name, stem
        assert enum["symbols"] == list(vocab.symbols), f"{stem}.{name} drifted from schemas/vocabulary.py"
        assert enum == vocab.avro_enum(), f"{stem}.{name}: write it as VOCABULARIES[{name!r}].avro_enum()"


def test_no_partner_field_is_free_text_except_site_config_ids_and_checked_cells() -> None:
    from privaflow.schemas.privacy import CONFIG_DIMENSIONS, SPATIAL_CELLS

    for stem in PARTNER_TABLES.values():
        strings = [f["name"] for f in load_schema(stem)["fields"] if "string" in str(f["type"])]
        assert set(strings) <= set(CONFIG_DIMENSIONS) | set(SPATIAL_CELLS), stem


@pytest.mark.parametrize("kind", VOCABULARIES)
def test_symbols_are_avro_names_and_map_one_to_one(kind: str) -> None:
    vocab = VOCABULARIES[kind]
    assert len(set(vocab.symbols)) == len(vocab.labels)
    for label in vocab.labels:
        symbol = partner_symbol(kind, label)
        assert AVRO_NAME.fullmatch(symbol), symbol
        assert partner_label(kind, symbol) == label


def test_every_label_the_edge_can_produce_maps_to_a_symbol() -> None:
    """Class names for every id a detector returns (0..79, as frame_record writes them), the age
    brackets, genders and colours of edge/attributes.py, and the tables' 'unknown'."""
    d = make_detections([[0, 0, 10, 10]] * len(COCO_CLASSES), [0.9] * len(COCO_CLASSES),
                        list(range(len(COCO_CLASSES))))
    frame = frame_record(0, 0, (640, 480), True, d, list(range(len(COCO_CLASSES))))
    for name in frame["class_name"]:
        assert partner_symbol("class_name", name)
    assert COCO_CLASSES is OBJECT_CLASSES  # the edge reads the one list
    for label in edge_attributes.AGE_BRACKETS:
        partner_symbol("age_bracket", label)
    for label in edge_attributes.GENDERS:
        partner_symbol("gender", label)
    for label in edge_attributes.COLOURS:
        partner_symbol("colour", label)
    # every bracket the age estimator can return, from any estimated age
    for years in np.linspace(-5, 130, 271):
        partner_symbol("age_bracket", edge_attributes.age_bracket(float(years)))
    assert TABLES_UNKNOWN == UNKNOWN
    partner_symbol("age_bracket", TABLES_UNKNOWN)
    partner_symbol("gender", TABLES_UNKNOWN)
    assert (edge_attributes.AGE_BRACKETS, edge_attributes.GENDERS, edge_attributes.COLOURS) == (
        AGE_BRACKETS, GENDERS, COLOURS)


def test_the_simulator_and_the_crowding_levels_stay_inside_the_vocabularies() -> None:
    for label in simulate.AGE_BRACKETS:
        partner_symbol("age_bracket", label)
    for label in simulate._CLASSES:
        partner_symbol("class_name", label)
    for _, level in CROWDING_THRESHOLDS:
        partner_symbol("crowding_level", level)
    assert partner_symbol("crowding_level", "FULL") == "FULL"
    assert set(CROWDING_LEVELS) == {level for _, level in CROWDING_THRESHOLDS} | {"FULL"}


def test_an_out_of_range_class_id_from_the_edge_is_refused_not_published() -> None:
    """frame_record writes str(id) for an id outside COCO; that label must become a dead letter."""
    d = make_detections([[0, 0, 10, 10]], [0.9], [80])
    label = frame_record(0, 0, (640, 480), True, d, [1])["class_name"][0]
    with pytest.raises(ValueError, match="class_name '80' is not in the closed vocabulary"):
        partner_symbol("class_name", label)


@pytest.mark.parametrize("text", FREE_TEXT)
@pytest.mark.parametrize("kind", VOCABULARIES)
def test_free_text_is_refused_naming_the_value(kind: str, text: str) -> None:
    with pytest.raises(ValueError) as e:
        partner_symbol(kind, text)
    assert repr(text) in str(e.value) and kind in str(e.value)


def test_an_unknown_vocabulary_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no closed vocabulary 'plate'; known: class_name, age_bracket"):
        partner_symbol("plate", "x")
    with pytest.raises(ValueError, match="symbol 'AGE_20_29'"):
        partner_label("age_bracket", "AGE_20_29")


def test_partner_symbols_rewrites_every_vocabulary_field_of_a_record() -> None:
    value = {"site_id": "s", "place_id": "door", "age_bracket": "70+", "gender": "female", "count": None}
    assert partner_symbols(value) == {**value, "age_bracket": "age_70_plus", "gender": "female"}
    assert partner_symbols({"class_name": "traffic light", "crowding_level": None}) == {
        "class_name": "traffic_light", "crowding_level": None}
    with pytest.raises(ValueError, match="'=1\\+1'"):
        partner_symbols({"gender": "=1+1"})


def _encode(stem: str, record: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(stem), record)
    buf.seek(0)
    out: dict[str, Any] = fastavro.schemaless_reader(buf, parsed_schema(stem))  # type: ignore[assignment]
    return out


def test_the_schema_itself_refuses_free_text() -> None:
    """Even a writer that skipped partner_symbol cannot put text outside the enum on the topic."""
    good = {"site_id": "s", "place_id": "door", "age_bracket": "age_70_plus", "gender": "female",
            "window_start": 0, "window_end": 60_000, "count": None, "suppressed": True}
    assert _encode("partner_attributes", good)["age_bracket"] == "age_70_plus"
    for field, text in (("age_bracket", "70+"), ("gender", '=HYPERLINK("http://x")'), ("gender", "KA01AB1234")):
        with pytest.raises(ValueError):
            _encode("partner_attributes", {**good, field: text})
    tv = {"site_id": "s", "line_id": "l", "direction": "in", "class_name": "plate KA01", "window_start": 0,
          "window_end": 60_000, "count": 5, "suppressed": False, "mean_speed_kmh": None, "p85_speed_kmh": None}
    with pytest.raises(ValueError):
        _encode("partner_traffic_volume", tv)
    assert _encode("partner_traffic_volume", {**tv, "class_name": "traffic_light"})["class_name"] == "traffic_light"
