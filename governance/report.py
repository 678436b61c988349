"""The privacy report (`privaflow privacy report`; G0, T9, T10): per camera what is captured,
processed and dropped, kept and for how long, shared with whom under which protection (a k-anonymity
threshold, or differential privacy with its budget), and which masks are in force, each with the
requirement ids it answers. Built from the same facts as the public notice (governance/facts.py) and
worded after docs/privacy-model.md.

What a DP partner's budget has *spent* lives in each camera's checkpointed state inside the stream
workers (streams/disclosure.py), and this command runs from the site config alone (no cluster access,
see docs/architecture.md), so the report gives the configured budget, the epsilon each window spends
and the workers' metrics that count what was spent and withheld."""

from __future__ import annotations

from typing import Any

from privaflow.governance.facts import K_TABLES, camera_facts, effective_k, md_escape, missing_notice_items, percent
from privaflow.schemas.site import DAY_S, Partner, SiteConfig
from privaflow.schemas.topics import (
    DAY_MS,
    DETECTIONS,
    DETECTIONS_DLQ,
    DP_RELEASES,
    LINE_CROSSINGS,
    ZONE_EVENTS,
    dp_topic_name,
    operator_topic_name,
    partner_topic_name,
    topics_for_site,
)
from privaflow.streams.tables import SPECS

FRAME_REQS = ["G1", "G2", "G3", "G4", "G5", "T4", "T6"]

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "privaflow privacy report",
    "type": "object",
    "required": ["report", "version", "site_id", "operator", "missing", "cameras", "partners", "k_anonymity",
                 "retention", "deletion_on_request", "requirements_cited"],
    "properties": {
        "report": {"const": "privaflow privacy report"},
        "version": {"const": 1},
        "site_id": {"type": "string"},
        "operator": {"type": ["object", "null"], "required": ["name", "contact", "purpose"]},
        "missing": {"type": "array", "items": {"type": "string"}},
        "cameras": {"type": "array", "items": {"$ref": "#/$defs/camera"}},
        "partners": {"type": "array", "items": {"type": "object", "required": ["id", "name", "tables",
                                                                              "privacy", "topics"]}},
        "k_anonymity": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["k", "rule"],
            "properties": {"k": {"type": ["integer", "null"]}, "rule": {"type": "string"}}}},
        "retention": {"type": "object", "required": ["detections_days", "partner_days", "topics",
                                                     "requirements"]},
        "deletion_on_request": {"type": "object", "required": ["statement", "requirements"]},
        "requirements_cited": {"type": "array", "items": {"type": "string", "pattern": "^[GT][0-9]+$"}},
    },
    "$defs": {
        "reqs": {"type": "array", "items": {"type": "string", "pattern": "^[GT][0-9]+$"}, "minItems": 1},
        "item": {"type": "object", "required": ["item", "description", "requirements"],
                 "properties": {"requirements": {"$ref": "#/$defs/reqs"}}},
        "camera": {
            "type": "object",
            "required": ["camera_id", "traffic_camera", "captured", "masks", "processed_and_discarded", "kept",
                         "shared", "notice"],
            "properties": {
                "camera_id": {"type": "string"},
                "traffic_camera": {"type": "boolean"},
                "captured": {"type": "object", "required": ["description", "max_width_px", "classes",
                                                            "requirements"]},
                "masks": {"type": "object", "required": ["count", "area_fraction", "requirements"],
                          "properties": {"count": {"type": "integer", "minimum": 0},
                                         "area_fraction": {"type": "number", "minimum": 0, "maximum": 1}}},
                "processed_and_discarded": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
                "kept": {"type": "array", "items": {"allOf": [
                    {"$ref": "#/$defs/item"},
                    {"type": "object", "required": ["topics", "retention_days"]}]}},
                "shared": {"type": "array", "items": {"type": "object", "required": [
                    "partner_id", "partner_name", "tables", "privacy", "requirements"]}},
                "notice": {"type": "object", "required": ["command", "requirements"]},
                "mobile": {"type": "object", "required": ["h3_resolution", "cell_edge_m", "privacy_zones",
                                                          "trip_end_radius_m", "requirements"],
                           "properties": {"h3_resolution": {"type": "integer"},
                                          "privacy_zones": {"type": "array", "items": {
                                              "type": "object", "required": ["id", "radius_m"],
                                              "properties": {"id": {"type": "string"},
                                                             "radius_m": {"type": "number"}},
                                              "additionalProperties": False}}}},
            },
        },
    },
}

DELETION_STATEMENT = (
    "Deletion on request is trivial because nothing identifying is stored: no frame, crop, face or feature "
    "vector ever leaves the edge device, detection records carry only a pseudonymous track id that rotates "
    "at least daily, and partner tables are k-anonymous or differentially private aggregates. No stored "
    "record can be linked to a "
    "person or a vehicle, so there is nothing to look up, disclose or erase for one; every record is erased "
    "by broker retention at the end of its period. Requests for disclosure, deletion or stop of use go to the "
    "operator's contact and are answered on that basis.")


def privacy_report(site: SiteConfig, config_name: str = "site.yaml") -> dict[str, Any]:
    """The machine-readable report (structure: REPORT_SCHEMA)."""
    topics = {t.name: t for t in topics_for_site(site)}
    det_days = site.retention.detections_days
    ks = effective_k(site)
    cameras = []
    for cam in site.cameras:
        f = camera_facts(site, cam.id)
        discarded = [{"item": "video frames", "description": "downscaled, masked and analysed in the edge "
                      "device's memory only; never written to disk or sent", "requirements": FRAME_REQS}]
        if f.colour:
            discarded.append({"item": "vehicle crops", "description": "centre crops of vehicle boxes, used to "
                              "name the colour and dropped in the same call", "requirements": ["T5", "T6"]})
        if f.attributes:
            discarded.append({"item": "person crops", "description": "crops of people used to estimate age "
                              "bracket and gender, dropped at once; no image or feature data is kept",
                              "requirements": ["G1"]})
        kept = [
            {"item": "detection records", "topics": [DETECTIONS], "retention_days": det_days,
             "description": "per frame: class, box, foot point, pseudonymous track id"
                            + (", ground position, speed, heading" if f.speed else "")
                            + (", colour name" if f.colour else "")
                            + (", age bracket and gender estimates" if f.attributes else ""),
             "requirements": ["T5", "T6", "T9"]},
            {"item": "events", "topics": [LINE_CROSSINGS, ZONE_EVENTS], "retention_days": det_days,
             "description": "line crossings and zone entries/exits with the pseudonymous track id",
             "requirements": ["T5", "T6", "T9"]},
            {"item": "dead letters", "topics": [DETECTIONS_DLQ],
             "retention_days": topics[DETECTIONS_DLQ].retention_ms / DAY_MS,
             "description": "detection records the stream workers could not use (undecodable, from another "
                            "site or camera, timestamps far ahead, boxes outside the picture, labels outside "
                            "the camera's classes or the closed vocabularies), kept whole as received: "
                            "pseudonymous track ids, millisecond timestamps, classes and attribute estimates, "
                            "with the reason; as sensitive as detections, so kept no longer, for diagnosis only",
             "requirements": ["T5", "T6", "T9"]},
            {"item": "operator aggregates", "topics": [operator_topic_name(t) for t in f.tables],
             "retention_days": topics[operator_topic_name(f.tables[0])].retention_ms / DAY_MS if f.tables else det_days,
             "description": "every closed window without suppression, for the operator's own dashboard view "
                            "(operator token); readable by the API's account only, never by a partner",
             "requirements": ["T8", "T9"]},
        ]
        if any(p.dp for p, ts in f.shared if ts):
            kept.append({"item": "differentially private releases", "topics": [DP_RELEASES],
                         "retention_days": topics[DP_RELEASES].retention_ms / DAY_MS,
                         "description": "each window released to a differential-privacy partner, as released "
                                        "(noisy counts, no track id), so that a window published again after a "
                                        "crash carries the same noise; readable by the stream workers only",
                         "requirements": ["T7", "T9"]})
        if f.tables:
            kept.append({"item": "partner aggregates", "topics": sorted({_topic(p, t) for p, ts in f.shared
                                                                          for t in ts}),
                         "retention_days": site.retention.partner_days,
                         "description": "closed-window tables: " + ", ".join(f.tables),
                         "requirements": ["T5", "T7", "T9"]})
        cameras.append({
            "camera_id": f.camera_id, "traffic_camera": f.traffic,
            "captured": {"description": f"video downscaled to at most {f.max_width} px wide before analysis; "
                                        f"detected classes: {', '.join(f.classes)}",
                         "max_width_px": f.max_width, "classes": list(f.classes), "speed": f.speed,
                         "colour": f.colour, "attributes": f.attributes,
                         "requirements": ["T4", "G4"] + (["T2"] if f.traffic else [])},
            "masks": {"count": f.mask_count, "area_fraction": f.mask_fraction,
                      "description": "blacked out before detection; nothing in them is analysed",
                      "requirements": ["T4"]},
            "processed_and_discarded": discarded,
            "kept": kept,
            "shared": [{"partner_id": p.id, "partner_name": p.name or p.id, "tables": list(t),
                        "privacy": _privacy(site, p), "requirements": ["T6", "T7"]} for p, t in f.shared],
            "notice": {"command": f"privaflow notice --config {config_name} --camera {f.camera_id} --lang ja "
                                  "--format html", "requirements": ["G0", "T3"]},
        })
        if f.mobile is not None:
            m = f.mobile
            cameras[-1]["mobile"] = {
                "h3_resolution": m.h3_resolution, "cell_edge_m": m.cell_edge_m,
                "privacy_zones": [{"id": z, "radius_m": r} for z, r in m.privacy_zones],
                "trip_end_radius_m": m.trip_end_radius_m, "trip_break_s": m.trip_break_s,
                "description": f"vehicle-mounted: the vehicle's position leaves the edge only as an H3 cell of "
                               f"resolution {m.h3_resolution} (about {m.cell_edge_m} m a side), never as "
                               f"coordinates; trip ids are random and change at least daily; nothing is recorded "
                               f"whose cell comes within a privacy zone's radius (zones listed by id and radius "
                               f"only, never their places) or within {m.trip_end_radius_m:g} m of where a trip "
                               f"starts or ends (records are held in the vehicle until it is that far away, and "
                               f"dropped if the trip ends first); people are only counted",
                "requirements": ["G4", "T6"]}
            kept[0]["description"] = (
                "per frame: class, box, the vehicle's H3 cell, heading sector, whole km/h and pseudonymous trip id, "
                "vehicles ahead, people count, road furniture passed; people's rows carry a new random id every frame")
    published = sorted(ks)
    report: dict[str, Any] = {
        "report": "privaflow privacy report", "version": 1, "site_id": site.site_id,
        "operator": site.operator.model_dump() if site.operator else None,
        "missing": missing_notice_items(site),
        "cameras": cameras,
        "partners": [{"id": p.id, "name": p.name or p.id, "tables": list(p.tables), "privacy": _privacy(site, p),
                      "topics": [_topic(p, t) for t in p.tables],
                      "http_access": p.token_env is not None} for p in site.partners],
        "k_anonymity": {t: {"k": ks[t] if t in K_TABLES else None, "rule": SPECS[t].suppression}
                        for t in published},
        "disclosure": {"policy": DISCLOSURE_POLICY, "model": "docs/privacy-model.md",
                       "requirements": ["T6", "T7", "G5"]},
        "retention": {"detections_days": det_days, "partner_days": site.retention.partner_days,
                      "topics": {name: t.retention_ms / DAY_MS for name, t in sorted(topics.items())},
                      "enforcement": "retention.ms on each topic (privaflow retention apply); the broker deletes "
                                     "expired segments, verified by tests/api/test_retention.py",
                      "requirements": ["T9"]},
        "deletion_on_request": {"statement": DELETION_STATEMENT, "requirements": ["T9", "T6"]},
        "encryption": {"description": "In the cluster every Kafka client uses TLS with SCRAM-SHA-512 and "
                                      "per-user ACLs; partners read only their own topics", "requirements": ["T8"]},
        "accountability": {"operator": site.operator.name if site.operator else None,
                           "requirements": ["T10", "G0"]},
    }
    cited: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            cited.update(node.get("requirements", []))
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)
    collect(report)
    report["requirements_cited"] = sorted(cited, key=lambda r: (r[0], int(r[1:])))
    return report


DISCLOSURE_POLICY = (
    "One policy for every partner table (streams/disclosure.py). k-anonymity: nothing computed from fewer "
    "than k distinct objects is published exactly; a cell below k is not published at all, so a missing row "
    "means fewer than k, possibly none; a statistic or bin resting on fewer than k objects is null; the "
    "crowding level of a zone is always published (G5) and so tells an empty zone from an occupied one; "
    "attribute counts at a line give way when traffic-volume persons at that line minus the published "
    "attribute counts would reveal fewer than k withheld people; after a change of window length no window "
    "overlapping one published at the old length is published; a window is published once. Differential "
    "privacy: every cell of the window's grid from the site config, zeros included, with discrete Laplace "
    "noise calibrated to each track's bounded contribution; statistics withheld except the occupancy p95 "
    "(noised); each window spends epsilon from the partner's daily budget per camera, and a window that would "
    "overspend is not published. Dead letters are kept no longer than detections.")


def _topic(p: Partner, table: str) -> str:
    return dp_topic_name(p.id, table) if p.dp else partner_topic_name(table)


def _privacy(site: SiteConfig, p: Partner) -> dict[str, Any]:
    """How one partner's tables are protected, and where its budget's spending is counted."""
    if not p.dp:
        return {"mechanism": "k_anonymity", "k": p.k_anonymity,
                "shared_topic_k": {t: strictest for t, strictest in effective_k(site).items() if t in p.tables}}
    per_window = p.epsilon_per_window(site.windows)
    windows_per_day = {t: DAY_S // int(getattr(site.windows, t)) for t in p.tables}
    needed = per_window * sum(windows_per_day.values())
    return {"mechanism": "laplace", "epsilon_per_day": p.privacy.epsilon_per_day, "epsilon_per_window": per_window,
            "contributions_per_window": p.privacy.contributions_per_window, "windows_per_day": windows_per_day,
            "budget_covers_the_day": needed <= (p.privacy.epsilon_per_day or 0) * (1 + 1e-9),
            "budget_scope": "per camera and UTC day; a person seen by n cameras in a day loses up to n times it",
            "spent": {"where": "each camera's checkpointed state in the stream workers (streams/disclosure.py)",
                      "metrics": ["privaflow_dp_epsilon_spent_total", "privaflow_dp_windows_withheld_total"],
                      "labels": {"partner": p.id}}}


def _privacy_text(pv: dict[str, Any]) -> str:
    if pv["mechanism"] == "k_anonymity":
        return f"k = {pv['k']}"
    note = "" if pv["budget_covers_the_day"] else "; the budget runs out before the end of each day"
    return (f"differential privacy, ε = {pv['epsilon_per_day']:g} per camera and day, {pv['epsilon_per_window']:.3g} "
            f"per window{note}")


def _reqs(node: dict[str, Any]) -> str:
    return f" ({', '.join(node['requirements'])})"


def report_markdown(r: dict[str, Any]) -> str:
    """The human-readable report: one section per camera, then retention, deletion and sharing."""
    md = md_escape
    out = [f"# Privacy report: site `{md(r['site_id'])}`", ""]
    op = r["operator"]
    if op:
        out += [f"- Operator: {md(op['name'])} ({md(op['contact'])})" + " (T10)",
                f"- Purpose: {md(op['purpose'])} (G0)"]
    if r["missing"]:
        out += [f"- **Missing for public notices:** {', '.join(r['missing'])} (G0, T3)"]
    out.append("")
    for c in r["cameras"]:
        cap, masks = c["captured"], c["masks"]
        out += [f"## Camera `{md(c['camera_id'])}`", "",
                f"- **Captured:** {md(cap['description'])}{_reqs(cap)}",
                f"- **Masks in force:** {masks['count']}, covering {percent(masks['area_fraction'])} of the "
                f"frame; {masks['description']}{_reqs(masks)}",
                "- **Processed and discarded at once:**"]
        out += [f"  - {d['item']}: {d['description']}{_reqs(d)}" for d in c["processed_and_discarded"]]
        out.append("- **Kept:**")
        out += [f"  - {k['item']} ({', '.join(f'`{t}`' for t in k['topics'])}): {k['description']}; "
                f"{k['retention_days']:g} days{_reqs(k)}" for k in c["kept"]]
        if c["shared"]:
            out.append("- **Shared with:**")
            out += [f"  - {md(s['partner_name'])} (`{md(s['partner_id'])}`): {', '.join(s['tables'])}; "
                    f"{_privacy_text(s['privacy'])}{_reqs(s)}" for s in c["shared"]]
        else:
            out.append("- **Shared with:** nobody")
        if c.get("mobile"):
            mob = c["mobile"]
            zones = ", ".join(f"`{md(z['id'])}` ({z['radius_m']:g} m)" for z in mob["privacy_zones"]) or "none"
            out += [f"- **Vehicle-mounted:** H3 resolution {mob['h3_resolution']} (cells about {mob['cell_edge_m']} m "
                    f"a side); privacy zones: {zones}; trip start and end: {mob['trip_end_radius_m']:g} m"
                    f"{_reqs(mob)}", f"  - {md(mob['description'])}"]
        out += [f"- **Notice:** `{md(c['notice']['command'])}`{_reqs(c['notice'])}", ""]
    out += [f"## Disclosure policy{_reqs(r['disclosure'])}", "", r["disclosure"]["policy"], "",
            f"The threat model and each rule's enforcement: `{r['disclosure']['model']}`.", "",
            "### k-anonymity (shared topics)", "", "| table | k applied | rule |", "|---|---|---|"]
    out += [f"| {t} | {v['k'] if v['k'] is not None else '—'} | {v['rule']} |" for t, v in r["k_anonymity"].items()]
    dp = [p for p in r["partners"] if p["privacy"]["mechanism"] == "laplace"]
    if dp:
        out += ["", "### Differential privacy (a topic per partner)", "",
                "| partner | ε per camera and day | ε per window | windows a day | budget spent |",
                "|---|---|---|---|---|"]
        for p in dp:
            pv = p["privacy"]
            spent = " and ".join(f"`{m}{{partner=\"{md(p['id'])}\"}}`" for m in pv["spent"]["metrics"])
            windows = sum(pv["windows_per_day"].values())
            out.append(f"| {md(p['name'])} (`{md(p['id'])}`) | {pv['epsilon_per_day']:g} | "
                       f"{pv['epsilon_per_window']:.3g} | {windows} | the workers' {spent} |")
    ret = r["retention"]
    out += ["", f"## Retention and deletion{_reqs(ret)}", "",
            f"- Detections and events: {ret['detections_days']:g} days; partner aggregates: "
            f"{ret['partner_days']:g} days.",
            f"- Enforced by {ret['enforcement']}.",
            f"- {r['deletion_on_request']['statement']}{_reqs(r['deletion_on_request'])}", "",
            f"## Encryption and access{_reqs(r['encryption'])}", "", r["encryption"]["description"] + ".", "",
            f"Requirements cited: {', '.join(r['requirements_cited'])}.", ""]
    return "\n".join(out)
