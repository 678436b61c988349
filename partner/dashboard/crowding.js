/* Crowding (G5, T5): a plain schematic per camera — zones coloured by their crowding level, counting
 * lines with their two directions and totals — and one card per zone with a 4-level gauge and person
 * pictograms. People are only ever drawn as the #person symbol, one per person present (p95).
 * Coordinates are the site config's: normalised 0..1, x right, y down.
 */
"use strict";

const LEVELS = ["EMPTY", "LOW", "CROWDED", "FULL"];
const LEVEL_COLOURS = {EMPTY: "#2c7bb6", LOW: "#1a9641", CROWDED: "#e08214", FULL: "#c62828"};
const LEVEL_WORDS = {EMPTY: "empty", LOW: "some people", CROWDED: "crowded", FULL: "full"};
const MAX_ICONS = 40;
const FRAME_W = 640, FRAME_H = 480;  // schematic frame, 4:3
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function personIcon(cls) {
  return svg("svg", {class: `person ${cls}`, viewBox: "0 0 24 24", "aria-hidden": "true"}, svg("use", {href: "#person"}));
}

/** Only http(s) (or same-origin relative) plan images; anything else is ignored. */
function planUrl(raw) {
  if (!raw) return null;
  try {
    const u = new URL(raw, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_) { return null; }
}

function renderLevelLegend() {
  const box = document.getElementById("level-legend");
  box.replaceChildren(...LEVELS.map(l => {
    const item = document.createElement("span");
    item.className = "legend-item";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = LEVEL_COLOURS[l];
    item.append(sw, `${l} — ${LEVEL_WORDS[l]}`);
    return item;
  }));
}

function latestPerZone(rows) {
  const latest = new Map();
  for (const r of rows) {
    const cur = latest.get(r.zone_id);
    if (!cur || r.window_start > cur.window_start) latest.set(r.zone_id, r);
  }
  return latest;
}

// ------------------------------------------------------------------ schematic

function clampX(x) { return Math.min(Math.max(x, 6), FRAME_W - 6); }
function clampY(y) { return Math.min(Math.max(y, 16), FRAME_H - 6); }

function text(x, y, str, cls, anchor = "middle") {
  return svg("text", {x: clampX(x), y: clampY(y), class: cls, "text-anchor": anchor}, str);
}

/** A counting line, and per direction an arrow across it (from the side it is counted from) with the
 * direction's name and total in the shown period. */
function lineGroup(line, totals) {
  const [[ax, ay], [bx, by]] = line.points.map(([x, y]) => [x * FRAME_W, y * FRAME_H]);
  const dx = bx - ax, dy = by - ay, len = Math.hypot(dx, dy) || 1;
  const ux = dx / len, uy = dy / len;
  // on-screen left of a->b (y down) is (uy, -ux); crossing left -> right is directions[0]
  const lx = uy, ly = -ux;
  const g = svg("g", {class: "count-line"},
    svg("line", {x1: ax, y1: ay, x2: bx, y2: by, class: "line-stroke"}),
    svg("circle", {cx: ax, cy: ay, r: 5, class: "line-end"}), svg("circle", {cx: bx, cy: by, r: 5, class: "line-end"}),
    text(ax - ux * 10, ay - uy * 10 - 8, line.id, "line-name", Math.abs(ux) > 0.7 ? "start" : "middle"));
  g.obstacles = [{segment: [[ax, ay], [bx, by]]}, {x: ax + 30 * Math.sign(ux || 0), y: ay - 14}];
  line.directions.forEach((dir, i) => {
    const t = i === 0 ? 0.3 : 0.7;
    const px = ax + dx * t, py = ay + dy * t;
    const sx = i === 0 ? -lx : lx, sy = i === 0 ? -ly : ly;  // where that direction goes
    const half = 22;
    g.append(svg("line", {x1: px - sx * half, y1: py - sy * half, x2: px + sx * half, y2: py + sy * half,
                          class: "dir-arrow", "marker-end": "url(#arrowhead)"}));
    const tot = totals.get(`${line.id}|${dir}`);
    const n = !tot ? "–" : (tot.known === 0 && tot.suppressed ? "<k" : fmt(tot.sum));
    const hx = px + sx * (half + 10), hy = py + sy * (half + 10);
    const anchor = Math.abs(sx) > 0.7 ? (sx > 0 ? "start" : "end") : "middle";
    const label = text(hx, hy + (sy > 0.7 ? 14 : sy < -0.7 ? -2 : 5), "", "dir-label", anchor);
    label.append(svg("tspan", {class: "dir-count"}, n), ` ${dir}`);
    g.append(label);
    g.obstacles.push({x: hx + (anchor === "start" ? 50 : anchor === "end" ? -50 : 0), y: hy});
  });
  return g;
}

function segmentDistance(px, py, [ax, ay], [bx, by]) {
  const dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy || 1;
  const t = Math.min(Math.max(((px - ax) * dx + (py - ay) * dy) / l2, 0), 1);
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}

/** Where a zone's label goes: the candidate (centroid, or a vertex pulled towards it) farthest from
 * the counting lines and the labels placed so far, since lines often run along zone borders. */
function labelSpot(pts, obstacles) {
  const cx = pts.reduce((s, p) => s + p[0], 0) / pts.length, cy = pts.reduce((s, p) => s + p[1], 0) / pts.length;
  const candidates = [[cx, cy], ...pts.map(([x, y]) => [x + (cx - x) * 0.45, y + (cy - y) * 0.45])];
  let best = candidates[0], bestScore = -Infinity;
  for (const [x, y] of candidates) {
    let score = Infinity;
    for (const o of obstacles) {
      // labels are wide and short: weigh horizontal distance less than vertical
      const d = o.segment ? segmentDistance(x, y, ...o.segment) : Math.hypot((x - o.x) / 2.2, y - o.y);
      score = Math.min(score, d);
    }
    if (score > bestScore + 1) { best = [x, y]; bestScore = score; }
  }
  return best;
}

function zoneShape(zone, occ, obstacles) {
  const pts = zone.polygon.map(([x, y]) => [x * FRAME_W, y * FRAME_H]);
  const level = occ ? occ.crowding_level : null;
  const colour = level ? LEVEL_COLOURS[level] : "#9e9e9e";
  const [sx, y] = labelSpot(pts, obstacles);
  const x = Math.min(Math.max(sx, 95), FRAME_W - 95);  // the label is about 190 units wide
  obstacles.push({x, y});
  return svg("g", {class: "zone-shape"},
    svg("polygon", {points: pts.map(p => p.join(",")).join(" "), fill: colour, "fill-opacity": 0.22,
                    stroke: colour, "stroke-width": 2.5}),
    text(x, y - 4, zone.id, "zone-name"),
    text(x, y + 18, !level ? "no data" : occ.p95_present === null || occ.p95_present === undefined ? level
                                 : `${level} · ${Math.ceil(occ.p95_present)} present`, "zone-level"));
}

function renderSchematics(site, latest, totals, plan) {
  const box = document.getElementById("schematics");
  const url = planUrl(plan);
  // a camera with neither zones nor lines has nothing to draw
  const drawn = site.cameras.filter(c => site.zones.some(z => z.camera === c) || site.lines.some(l => l.camera === c));
  box.replaceChildren(...drawn.map(cam => {
    const root = svg("svg", {viewBox: `0 0 ${FRAME_W} ${FRAME_H}`, class: "schematic", role: "img",
                             "aria-label": `schematic of camera ${cam}: zones coloured by crowding level, counting lines`},
      svg("rect", {x: 0, y: 0, width: FRAME_W, height: FRAME_H, class: "frame"}));
    if (url) root.append(svg("image", {href: url, x: 0, y: 0, width: FRAME_W, height: FRAME_H,
                                       preserveAspectRatio: "none", opacity: 0.55}));
    const lines = site.lines.filter(l => l.camera === cam).map(l => lineGroup(l, totals));
    const obstacles = lines.flatMap(g => g.obstacles);
    for (const z of site.zones.filter(z => z.camera === cam)) root.append(zoneShape(z, latest.get(z.id), obstacles));
    root.append(...lines);  // lines over zones
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = `camera ${cam}`;
    fig.append(root, cap);
    return fig;
  }));
}

// ------------------------------------------------------------------ zone cards

function gauge(level) {
  const idx = LEVELS.indexOf(level);
  const g = document.createElement("div");
  g.className = "gauge";
  g.setAttribute("role", "meter");
  g.setAttribute("aria-valuemin", "0");
  g.setAttribute("aria-valuemax", "3");
  g.setAttribute("aria-valuenow", String(idx));
  g.setAttribute("aria-valuetext", level);
  LEVELS.forEach((l, i) => {
    const seg = document.createElement("span");
    seg.className = "seg" + (i === idx ? " current" : "");
    seg.style.background = i <= idx ? LEVEL_COLOURS[level] : "";
    seg.textContent = l;
    g.append(seg);
  });
  return g;
}

function stat(testid, value, text, caption) {
  const d = document.createElement("div");
  d.className = "stat";
  const b = document.createElement("strong");
  b.dataset.testid = testid;
  const withheld = value === null || value === undefined;  // fewer than k people behind it (partner view)
  b.dataset.value = withheld ? "" : String(value);
  b.textContent = withheld ? "withheld" : text;
  if (withheld) b.className = "supp";
  const c = document.createElement("span");
  c.textContent = caption;
  d.append(b, c);
  return d;
}

function zoneCard(zone, occ) {
  const card = document.createElement("article");
  card.className = "zone-card";
  const h = document.createElement("h3");
  h.textContent = zone.id;
  card.append(h);
  if (!occ) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "no occupancy data in the shown period";
    card.append(p);
    return card;
  }
  const level = occ.crowding_level;
  card.style.setProperty("--level", LEVEL_COLOURS[level]);
  const badge = document.createElement("div");
  badge.className = "level-badge";
  badge.dataset.testid = `occ-level-${zone.id}`;
  badge.dataset.value = level;
  badge.textContent = level;
  h.append(badge);
  card.append(gauge(level));

  const known = occ.p95_present !== null && occ.p95_present !== undefined;
  const people = known ? Math.ceil(occ.p95_present) : 0;
  const slots = Math.min(Math.max(people, zone.capacity || 0), MAX_ICONS);
  const icons = document.createElement("div");
  icons.className = "icons";
  icons.dataset.testid = `occ-icons-${zone.id}`;
  icons.dataset.value = known ? String(people) : "";
  icons.setAttribute("role", "img");
  icons.setAttribute("aria-label", known ? `${people} people present${zone.capacity ? ` of capacity ${zone.capacity}` : ""}`
                                         : "how many: withheld (fewer than k people)");
  for (let i = 0; i < slots; i++) icons.append(personIcon(i < people ? "on" : "off"));
  if (people > MAX_ICONS) {
    const more = document.createElement("span");
    more.className = "more";
    more.textContent = `+${people - MAX_ICONS}`;
    icons.append(more);
  }
  card.append(icons);

  const stats = document.createElement("div");
  stats.className = "stats";
  stats.append(
    stat(`occ-p95-${zone.id}`, occ.p95_present, fmt(occ.p95_present, 1), "people (p95)"),
    stat(`occ-mean-${zone.id}`, occ.mean_present, fmt(occ.mean_present, 1), "mean"),
    stat(`occ-max-${zone.id}`, occ.max_present, fmt(occ.max_present), "max"),
    zone.capacity ? stat(`occ-capacity-${zone.id}`, zone.capacity, fmt(zone.capacity), "capacity")
                  : stat(`occ-capacity-${zone.id}`, "", "—", "no capacity set"));
  card.append(stats);
  const when = document.createElement("p");
  when.className = "muted small";
  when.textContent = `window ${hhmm(occ.window_start)}–${hhmm(occ.window_end)} · ${fmt(occ.samples)} frames`;
  card.append(when);
  return card;
}

function renderCrowding(site, occRows, totals, plan) {
  const latest = latestPerZone(occRows);
  renderSchematics(site, latest, totals, plan);
  // an approach's lane zones are the congestion map's, not crowding zones (no head count of people)
  const lanes = new Set((site.intersections || []).flatMap(x => x.approaches.flatMap(a => a.lanes)));
  const zones = site.zones.filter(z => !lanes.has(z.id) || latest.has(z.id));
  for (const id of latest.keys()) if (!zones.some(z => z.id === id)) zones.push({id, capacity: null});
  document.getElementById("zones").replaceChildren(...zones.map(z => zoneCard(z, latest.get(z.id))));
}
