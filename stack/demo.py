"""`privaflow demo`: the whole pipeline on sample footage, on the local stack.

Starts the stack, a stream worker, the partner API + dashboard, and one edge agent per camera
(restarted when its video ends, so the demo stays live), prints the dashboard URL, and stops
everything it started on Ctrl-C or after `--duration`, then prints a summary of the tables.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml

from privaflow.schemas.site import SiteConfig, load_site_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "site.yaml"
# Vehicle-mounted cameras (G4): the demo adds the taxis and the map maker of this file to the site. Two
# taxis replay the same dashcam clip and synthetic track at once, as two probe vehicles on one route, so
# every cell is passed by two distinct trips and the road-condition map shows under the demo's k of 2.
MOBILE_EXAMPLE = REPO / "examples" / "mobile.yaml"
DEMO_ROAD_WINDOW_S = 60
DEMO_MAX_HOLD_S = 20  # enough to clear 150 m and a cell at highway speed; the road windows close sooner
# Short windows so tables fill within a minute. The sample footage has about 20 line crossings a minute
# on campus and 7 on the street, split over directions and classes: in the example's k of 5 no 10-s
# cell reached it, and the headline table stayed empty. 15-s traffic-volume windows with 6 s of grace
# and k = 2 for the demo's partners let real counts through in the first minute, for any phase of the
# windows, once the edges have analysed 35 s of video (measured on the recorded footage). Every camera
# detects on every second frame (tracking in between): edges, worker and stack share one machine here,
# and at every frame the campus edge fell behind real time. A real site keeps its config's settings.
# The intersection (the street clip, twice) sees two motor vehicles a minute (the detector finds a bus and
# a car in each 60-s loop of the 1906 film): with 60-s congestion windows most windows hold both, k = 2 is
# reached and the congestion map shows a level of service within the first two minutes.
DEMO_WINDOWS = {"traffic_volume": 15, "occupancy": 10, "flow_lines": 20, "dwell": 20, "attributes": 30,
                "congestion": 60, "intersection_volume": 60, "turning_movements": 60, "vehicle_colours": 60,
                "grace_s": 6}
DEMO_COUNTING = {"track_expiry_s": 5}
DEMO_K_ANONYMITY = 2
DEMO_DETECT_EVERY = 2
DEMO_OPERATOR_ENV = "PRIVAFLOW_TOKEN_OPERATOR"


@dataclass
class Child:
    """A process the demo started; restarted when `restart` is set and it ends."""

    name: str
    cmd: list[str]
    log: Path
    restart: bool = False
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **self.env}, start_new_session=True)
        self.runs += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def demo_config(source: Path, out: Path, windows: dict[str, int],
                mobile: Path | None = MOBILE_EXAMPLE) -> tuple[Path, SiteConfig]:
    """The example config with short windows and the demo's k (so traffic volumes show within a minute),
    the mobile example's taxis and map maker added, and sources made absolute."""
    data = yaml.safe_load(source.read_text())
    if mobile is not None and not any(c.get("kind") == "mobile" for c in data["cameras"]):
        extra = yaml.safe_load(mobile.read_text())
        data["cameras"] += extra["cameras"]
        data["partners"] = data.get("partners", []) + extra.get("partners", [])
        windows = {**windows, "road_conditions": DEMO_ROAD_WINDOW_S}
    data["windows"] = {**data.get("windows", {}), **windows}
    data["counting"] = {**data.get("counting", {}), **DEMO_COUNTING}
    for partner in data.get("partners", []):
        partner["k_anonymity"] = min(int(partner.get("k_anonymity", 5)), DEMO_K_ANONYMITY)
    # the dashboard's operator view wants an operator token; the demo makes one up (see `demo`)
    operator = data.get("operator") or {"name": "privaflow demo", "contact": "nobody@example.invalid",
                                        "purpose": "A demonstration on sample footage."}
    data["operator"] = {**operator, "token_env": operator.get("token_env") or DEMO_OPERATOR_ENV}
    for cam in data["cameras"]:
        cam["detect_every"] = max(int(cam.get("detect_every", 1)), DEMO_DETECT_EVERY)
        src = cam["source"]
        if isinstance(src, str) and not src.startswith(("rtsp:", "http:", "https:")) and not Path(src).is_absolute():
            cam["source"] = str((REPO / src).resolve())
        if "mobile" in cam:
            cam["mobile"]["max_hold_s"] = min(float(cam["mobile"].get("max_hold_s", 900)), DEMO_MAX_HOLD_S)
        position = cam.get("mobile", {}).get("position", {})
        if position.get("kind") in ("gpx", "nmea") and not Path(position["path"]).is_absolute():
            position["path"] = str((REPO / position["path"]).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out, load_site_config(out)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "privaflow", *args]


def summarise(site: SiteConfig, rows: dict[str, list[dict[str, object]]],
              partners: dict[str, dict[str, int]] | None = None) -> str:
    """Counts per line and direction, occupancy per zone, transitions — from the operator's rows (before
    any suppression); then how many rows each partner received (`partners`: id -> table -> rows)."""
    lines = [f"site {site.site_id} (operator view: counts before suppression)"]
    tv: dict[tuple[str, str, str], int] = defaultdict(int)
    suppressed = 0
    for r in rows.get("traffic_volume", []):
        if r.get("count") is None:
            suppressed += 1
            continue
        tv[(str(r["line_id"]), str(r["direction"]), str(r["class_name"]))] += int(r["count"])  # type: ignore[call-overload]
    lines.append("traffic volume (crossings, all closed windows):")
    for (line, direction, cls), n in sorted(tv.items()):
        lines.append(f"  {line:20} {direction:12} {cls:10} {n:6d}")
    if not tv:
        lines.append("  (no closed windows yet)")
    if suppressed:
        lines.append(f"  {suppressed} window cells suppressed (below k)")
    lines.append("occupancy (latest closed window per zone):")
    latest: dict[str, dict[str, object]] = {}
    for r in rows.get("occupancy", []):
        z = str(r["zone_id"])
        if z not in latest or str(r["window_start"]) > str(latest[z]["window_start"]):
            latest[z] = r
    for z, r in sorted(latest.items()):
        mean = "  —  " if r["mean_present"] is None else f"{float(r['mean_present']):5.1f}"  # type: ignore[arg-type]
        lines.append(f"  {z:20} mean {mean}  max {r['max_present']}  level {r['crowding_level']}")
    if not latest:
        lines.append("  (no closed windows yet)")
    lines += _congestion_summary(rows)
    od: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows.get("flow_lines", []):
        if r.get("count") is not None:
            od[(str(r["origin_zone_id"]), str(r["destination_zone_id"]))] += int(r["count"])  # type: ignore[call-overload]
    if od:
        lines.append("flow lines (origin -> destination):")
        for (o, d), n in sorted(od.items()):
            lines.append(f"  {o} -> {d}: {n}")
    road = rows.get("road_conditions", [])
    if site.mobile_cameras():
        lines.append("road conditions (vehicle-mounted cameras: a real dashcam clip, a synthetic GPS track):")
        levels: dict[str, int] = defaultdict(int)
        for r in road:
            levels[str(r.get("congestion_level"))] += 1
        cells = {str(r["h3_cell"]) for r in road}
        lines.append(f"  {len(road)} cell-windows published over {len(cells)} H3 cells; levels "
                     + (", ".join(f"{k} {v}" for k, v in sorted(levels.items())) or "none yet"))
    if partners:
        lines.append("what partners received (rows; below k a cell is not published):")
        for p in site.partners:
            got = partners.get(p.id, {})
            how = "differential privacy" if p.dp else f"k={p.k_anonymity}"
            lines.append(f"  {p.id:10} {how:22} " + ", ".join(f"{t} {got.get(t, 0)}" for t in p.tables))
    return "\n".join(lines)


def _congestion_summary(rows: dict[str, list[dict[str, object]]]) -> list[str]:
    """The latest closed congestion window per approach, and the vehicles entering per approach."""
    out = ["congestion (latest closed window per approach):"]
    latest: dict[tuple[str, str], dict[str, object]] = {}
    for r in rows.get("congestion", []):
        key = (str(r["intersection_id"]), str(r["approach_id"]))
        if key not in latest or str(r["window_start"]) > str(latest[key]["window_start"]):
            latest[key] = r
    for (x, a), r in sorted(latest.items()):
        if r.get("suppressed"):
            out.append(f"  {x}/{a:14} withheld: fewer than k vehicles in the lanes")
        else:
            speed = r["mean_speed_kmh"]
            out.append(f"  {x}/{a:14} LOS {r['level_of_service']}  queue {float(r['queue_length_m']):5.1f} m  "  # type: ignore[arg-type]
                       f"vehicles {r['count']}  speed {'-' if speed is None else f'{float(speed):.1f} km/h'}")  # type: ignore[arg-type]
    if not latest:
        out.append("  (no closed windows yet)")
    entering: dict[str, int] = defaultdict(int)
    for r in rows.get("intersection_volume", []):
        if r.get("flow_direction") == "entering" and r.get("count") is not None:
            entering[f"{r['intersection_id']}/{r['approach_id']}"] += int(r["count"])  # type: ignore[call-overload]
    if entering:
        out.append("vehicles entering per approach: " + ", ".join(f"{a} {n}" for a, n in sorted(entering.items())))
    return out


def read_rows(site: SiteConfig, timeout: float = 20) -> tuple[dict[str, list[dict[str, object]]],
                                                             dict[str, dict[str, int]]]:
    """The operator's rows of the site (latest value per key: the topics are compacted), and per partner
    how many rows of each table it received, as the partner API reads them."""
    from privaflow.partner.store import OPERATOR, SHARED, PartnerStore
    from privaflow.schemas.topics import PARTNER_TABLES

    store = PartnerStore(site.site_id, dp_partners=[p.id for p in site.partners if p.dp])
    store.start()
    try:
        store.wait_ready(timeout)
        received: dict[str, dict[str, int]] = {
            p.id: {str(t): len(store.rows(t, view=p.id if p.dp else SHARED)) for t in p.tables} for p in site.partners}
        return {table: store.rows(table, view=OPERATOR) for table in PARTNER_TABLES}, received
    finally:
        store.stop()


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=str(EXAMPLE),
              show_default=True, help="Site config whose cameras, lines and zones the demo uses.")
@click.option("--duration", type=float, default=None,
              help="Run this many seconds, then stop and print a summary (default: until Ctrl-C).")
@click.option("--port", type=int, default=8000, show_default=True, help="Dashboard and partner API port.")
@click.option("--worker-port", type=int, default=6066, show_default=True, help="Stream worker's HTTP views port.")
def demo(config_path: str, duration: float | None, port: int, worker_port: int) -> None:
    """Run the whole pipeline on sample footage: stack, edge agents, stream worker, dashboard.

    Windows are shortened (10-30 s), k-anonymity lowered to 2 and detection run on every second frame so
    traffic volumes show within a minute on the sample footage. Logs go to .privaflow/demo/.
    """
    from privaflow.schemas.topics import ensure_topics, topics_for_site
    from privaflow_stack.local import LocalStack, home

    st = LocalStack()
    st.up()
    os.environ["PRIVAFLOW_BOOTSTRAP"], os.environ["PRIVAFLOW_REGISTRY_URL"] = st.bootstrap, st.registry_url
    run_dir = home() / "demo"
    cfg_path, site = demo_config(Path(config_path), run_dir / "site.yaml", DEMO_WINDOWS)
    ensure_topics(st.bootstrap, topics_for_site(site))
    missing = [c.source for c in site.cameras if isinstance(c.source, str) and "://" not in c.source
               and not Path(c.source).exists()]
    if missing:
        raise click.ClickException(f"sample footage missing ({', '.join(map(str, missing))}): run `make media`")

    tokens = {p.token_env: f"privaflow-demo-token-{p.id}" for p in site.partners if p.token_env}
    # the operator's dashboard token: fresh for each demo
    operator_env = site.operator.token_env if site.operator and site.operator.token_env else DEMO_OPERATOR_ENV
    operator = secrets.token_urlsafe(24)
    tokens[operator_env] = operator
    children = [
        Child("worker", _cli("streams", "worker", "--config", str(cfg_path), "--web-port", str(worker_port),
                             "--data-dir", str(run_dir / "worker")), run_dir / "worker.log"),
        Child("api", _cli("api", "serve", "--config", str(cfg_path), "--port", str(port)), run_dir / "api.log",
              env=tokens),
    ]
    if site.mobile_cameras():
        # the road_conditions table over every vehicle of the site (one process per site)
        children.append(Child("road", _cli("streams", "road", "--config", str(cfg_path), "--settle", "5"),
                              run_dir / "road.log"))
    for cam in site.cameras:
        children.append(Child(f"edge-{cam.id}", _cli("edge", "run", "--config", str(cfg_path), "--camera", cam.id,
                                                     "--spool-dir", str(run_dir / "spool" / cam.id)),
                              run_dir / f"edge-{cam.id}.log", restart=True))
    click.echo(f"privaflow demo — site {site.site_id}, cameras {', '.join(c.id for c in site.cameras)} (demo "
               f"settings: traffic-volume windows {site.windows.traffic_volume} s, k-anonymity "
               f"{DEMO_K_ANONYMITY})", err=True)
    if site.mobile_cameras():
        click.echo("  vehicle-mounted cameras " + ", ".join(c.id for c in site.mobile_cameras()) + ": both replay "
                   "drive.mp4 (a real dashcam clip of a US highway, Udacity's MIT-licensed project video) with a "
                   "SYNTHETIC GPS track, examples/tracks/drive.gpx (CC0, stack/make_drive_track.py): no track was "
                   "recorded with the clip", err=True)
    for ch in children:
        ch.start()
        click.echo(f"  started {ch.name:14} log {ch.log}", err=True)
    partner_tokens = ", ".join(f"{k}={v}" for k, v in tokens.items() if k != operator_env)
    click.echo(f"\n  dashboard   http://127.0.0.1:{port}/dashboard/#token={operator}\n"
               f"              (the operator view: counts before suppression, and a switch to what each partner sees)\n"
               f"  partner API http://127.0.0.1:{port}/api/v1/openapi.json (tokens: {partner_tokens})\n"
               f"  worker      http://127.0.0.1:{worker_port}/tables/traffic_volume\n", err=True)
    click.echo("Ctrl-C stops everything the demo started (the stack keeps running: `privaflow stack down`).",
               err=True)
    started = time.monotonic()
    interrupted = False

    def _as_ctrl_c(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the demo's children just like Ctrl-C

    signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        while duration is None or time.monotonic() - started < duration:
            time.sleep(1)
            for ch in children:
                if not ch.alive():
                    if ch.restart:
                        ch.start()  # the video ended: play it again so the demo stays live
                    else:
                        raise click.ClickException(f"{ch.name} stopped unexpectedly; see {ch.log}")
            if int(time.monotonic() - started) % 15 == 0:
                click.echo(f"  running {time.monotonic() - started:4.0f}s  edge restarts "
                           f"{sum(c.runs - 1 for c in children if c.restart)}", err=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for ch in reversed(children):
            ch.stop()
    if not interrupted:
        rows, received = read_rows(site)
        click.echo(summarise(site, rows, received))
