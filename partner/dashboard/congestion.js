/* Intersections (T1, T5): a congestion map per intersection — each approach an arm in its compass
 * direction, coloured by its level of service, its queue drawn to scale from the stop line — with a
 * time slider over the last hours; vehicles entering per approach and the speed in its lanes over
 * time; turning movements; vehicle colours. Uses app.js's helpers (el, fmt, hhmm, tally, countCell,
 * upsertChart, chartOptions, colourAt, groupBy, windowsOf).
 *
 * Every number carries data-testid + data-value, the queue bar too: its drawn length in px
 * (data-value) is the queue in metres times the map's scale (data-scale on the same element,
 * `cg-scale` on the scale bar), so a test can hold the drawing to the API's numbers.
 */
"use strict";

const LOS = ["A", "B", "C", "D", "E", "F"];
const LOS_COLOURS = {A: "#1a9850", B: "#66bd63", C: "#a6d96a", D: "#fdae61", E: "#f46d43", F: "#a50026"};
const LOS_WORDS = {A: "≤ 10 s delay", B: "≤ 20 s", C: "≤ 35 s", D: "≤ 55 s", E: "≤ 80 s", F: "> 80 s"};
const NO_DATA = "#b4b9c1";
const MAP = 640, CENTRE = MAP / 2, BOX = 36, LANE_W = 24, ARM_PX = 230;
// compass side -> rotation of the arm drawn along +x (screen y points down, north is up)
const ANGLE = {E: 0, SE: 45, S: 90, SW: 135, W: 180, NW: -135, N: -90, NE: -45};
const FAMILY_COLOURS = {white: "#e9ecef", black: "#212529", grey: "#868e96", red: "#c92a2a", blue: "#1c7ed6",
                        other: "#f59f00", unknown: "#ced4da"};
const cg = {rows: [], windows: [], index: null, follow: true, from: null, to: null};

function svgEl(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function renderLosLegend() {
  const box = document.getElementById("los-legend");
  box.replaceChildren(...LOS.map(l => el("span", {class: "legend-item"},
    el("span", {class: "swatch", style: `background:${LOS_COLOURS[l]}`}), `${l} ${LOS_WORDS[l]}`)),
    el("span", {class: "legend-item"}, el("span", {class: "swatch", style: `background:${NO_DATA}`}),
       "fewer than k vehicles, or no data"));
}

/** Metres -> px for one intersection: its longest lane or queue in the loaded hours fits an arm. */
function mapScale(x, rows) {
  let longest = 10;
  for (const a of x.approaches) longest = Math.max(longest, ...(a.lane_lengths_m || [0]).map(Number));
  for (const r of rows) if (r.intersection_id === x.id && r.queue_length_m) longest = Math.max(longest, r.queue_length_m);
  return ARM_PX / longest;
}

function niceMetres(maxM) {
  for (const m of [5, 10, 20, 25, 50, 100, 200, 250, 500, 1000]) if (m >= maxM / 4) return m;
  return 1000;
}

function approachValue(r, field) {
  if (!r) return "";
  if (r.suppressed) return "suppressed";
  return r[field] === null || r[field] === undefined ? "" : String(r[field]);
}

function drawIntersection(x, rowsAt, scale) {
  const id = x.id;
  const root = svgEl("svg", {viewBox: `0 0 ${MAP} ${MAP}`, class: "cg-map", role: "img",
    "aria-label": `congestion map of ${x.name || id}: approaches coloured by level of service, queues to scale`});
  root.append(svgEl("rect", {x: 0, y: 0, width: MAP, height: MAP, class: "cg-ground"}));
  const labels = [];
  for (const a of x.approaches) {
    const r = rowsAt.get(a.id);
    const level = r && !r.suppressed ? r.level_of_service : null;
    const colour = level ? LOS_COLOURS[level] : NO_DATA;
    const laneM = Math.max(...(a.lane_lengths_m || [0]).map(Number));
    const lanePx = laneM * scale, queueM = r && !r.suppressed ? (r.queue_length_m || 0) : 0;
    const queuePx = queueM * scale;
    const g = svgEl("g", {class: "cg-arm", transform: `translate(${CENTRE} ${CENTRE}) rotate(${ANGLE[a.compass] ?? 0})`});
    g.append(
      svgEl("rect", {x: BOX, y: -LANE_W, width: CENTRE - BOX, height: 2 * LANE_W, class: "cg-road"}),
      svgEl("line", {x1: BOX, y1: 0, x2: CENTRE, y2: 0, class: "cg-centre-line"}),
      // the observed lane zones on the inbound side, in the approach's level-of-service colour
      svgEl("rect", {x: BOX, y: 0, width: lanePx, height: LANE_W, fill: colour, class: "cg-lanes",
                     "data-testid": `cg-lane-px-${id}-${a.id}`, "data-value": String(lanePx)}),
      svgEl("rect", {x: BOX, y: 4, width: queuePx, height: LANE_W - 8, class: "cg-queue",
                     "data-testid": `cg-queue-px-${id}-${a.id}`, "data-value": String(queuePx),
                     "data-scale": String(scale)}),
      svgEl("line", {x1: BOX, y1: 0, x2: BOX, y2: LANE_W, class: "cg-stop-line"}));
    root.append(g);
    // the label, upright, beside the arm's outer part on its outbound side (away from the queue)
    const rad = (ANGLE[a.compass] ?? 0) * Math.PI / 180;
    const cos = Math.cos(rad), sin = Math.sin(rad);
    const nx = sin, ny = -cos;  // the outbound side: the arm's local -y, rotated
    const along = BOX + ARM_PX * 0.8, off = LANE_W + 16;
    const lx = CENTRE + cos * along + nx * off, ly = CENTRE + sin * along + ny * off;
    const anchor = nx > 0.3 ? "start" : nx < -0.3 ? "end" : "middle";
    const top = ly + (ny < -0.3 ? -46 : ny > 0.3 ? 16 : -20);  // the three lines grow downwards from `top`
    const t = svgEl("text", {x: Math.min(Math.max(lx, 8), MAP - 8), y: Math.min(Math.max(top, 20), MAP - 50),
                             "text-anchor": anchor, class: "cg-label"});
    t.append(svgEl("tspan", {class: "cg-name", x: t.getAttribute("x"), dy: 0}, `${a.id} · ${a.road}`));
    const losText = !r ? "no data" : r.suppressed ? `${kOf("congestion")} vehicles` : `LOS ${level}`;
    t.append(svgEl("tspan", {x: t.getAttribute("x"), dy: 20, class: "cg-los", fill: level ? "#1f2329" : "#6b7078",
                             "data-testid": `cg-los-${id}-${a.id}`, "data-value": r ? (r.suppressed ? "suppressed" : level) : ""},
                   losText));
    const queueText = !r ? "queue —" : r.suppressed ? `${kOf("congestion")}: withheld` : `queue ${fmt(r.queue_length_m, 0)} m`;
    t.append(svgEl("tspan", {x: t.getAttribute("x"), dy: 19, class: "cg-queue-text",
                             "data-testid": `cg-queue-${id}-${a.id}`, "data-value": approachValue(r, "queue_length_m")},
                   queueText));
    labels.push(t);
  }
  root.append(svgEl("rect", {x: CENTRE - BOX, y: CENTRE - BOX, width: 2 * BOX, height: 2 * BOX, class: "cg-box"}));
  root.append(...labels);
  // north arrow and scale bar
  root.append(svgEl("g", {class: "cg-north", transform: `translate(${MAP - 40} 46)`},
    svgEl("path", {d: "M0,-24 L9,6 L0,0 L-9,6 z"}), svgEl("text", {x: 0, y: 24, "text-anchor": "middle"}, "N")));
  const barM = niceMetres(ARM_PX / scale);
  root.append(svgEl("g", {class: "cg-scalebar", transform: `translate(24 ${MAP - 30})`},
    svgEl("line", {x1: 0, y1: 0, x2: barM * scale, y2: 0, "data-testid": `cg-scale-${id}`, "data-value": String(scale)}),
    svgEl("line", {x1: 0, y1: -6, x2: 0, y2: 6}), svgEl("line", {x1: barM * scale, y1: -6, x2: barM * scale, y2: 6}),
    svgEl("text", {x: barM * scale / 2, y: -10, "text-anchor": "middle"}, `${barM} m`)));
  return root;
}

function approachCards(x, rowsAt) {
  return x.approaches.map(a => {
    const r = rowsAt.get(a.id);
    const ok = r && !r.suppressed;
    const stat = (key, field, digits, unit) => el("div", {class: "stat"},
      el("strong", {"data-testid": `cg-${key}-${x.id}-${a.id}`, "data-value": approachValue(r, field),
                    class: r && r.suppressed ? "supp" : null,
                    text: r && r.suppressed ? kOf("congestion")
                      : ok && r[field] !== null && r[field] !== undefined ? `${fmt(r[field], digits)}${unit}` : "—"}),
      el("span", {text: {present: "vehicles (mean)", speed: "speed", delay: "delay / vehicle", max: "max present"}[key]}));
    const card = el("article", {class: "zone-card cg-card"},
      el("h3", {}, `${a.id}`, el("span", {class: "muted small", text: ` ${a.road}, from ${a.compass}`})));
    card.style.setProperty("--level", ok ? LOS_COLOURS[r.level_of_service] : NO_DATA);
    card.append(el("div", {class: "stats"}, stat("present", "mean_present", 1, ""), stat("max", "max_present", 0, ""),
                   stat("speed", "mean_speed_kmh", 1, " km/h"), stat("delay", "mean_delay_s", 0, " s")));
    if (!r) card.append(el("p", {class: "empty small", text: "no window of this approach at this time"}));
    else if (r.suppressed) {
      card.append(el("p", {class: "supp small", text: `fewer than ${kOf("congestion").slice(1)} vehicles: withheld`}));
    }
    return card;
  });
}

function renderMapAt() {
  const box = document.getElementById("cg-maps");
  const slider = document.getElementById("cg-slider");
  const label = document.getElementById("cg-window");
  const n = cg.windows.length;
  slider.max = String(Math.max(n - 1, 0));
  slider.disabled = n < 2;
  if (cg.follow || cg.index === null || cg.index >= n) cg.index = n - 1;
  slider.value = String(Math.max(cg.index, 0));
  const start = n ? cg.windows[cg.index] : null;
  const rows = start ? cg.rows.filter(r => r.window_start === start) : [];
  label.dataset.value = start || "";
  label.textContent = start ? `${hhmm(start)}–${hhmm(rows[0].window_end)}` + (cg.index === n - 1 ? " (latest)" : "")
                            : "no congestion window in the last hours";
  box.replaceChildren(...(site.intersections || []).map(x => {
    const at = new Map(rows.filter(r => r.intersection_id === x.id).map(r => [r.approach_id, r]));
    const fig = el("figure", {class: "cg-figure"}, drawIntersection(x, at, mapScale(x, cg.rows)),
                   el("figcaption", {text: `${x.name || x.id}`}));
    return el("div", {class: "cg-block"}, fig, el("div", {class: "zones cg-cards"}, ...approachCards(x, at)));
  }));
}

/** The congestion rows of the last hours (fetched by app.js), and the slider over their windows. */
function renderCongestionMap(rows, from, to) {
  cg.rows = rows;
  cg.windows = windowsOf(rows);
  cg.from = from;
  cg.to = to;
  const sec = document.getElementById("sec-intersection");
  sec.dataset.cgFrom = from;
  sec.dataset.cgTo = to;
  renderMapAt();
}

function onSlider() {
  const slider = document.getElementById("cg-slider");
  cg.index = Number(slider.value);
  cg.follow = cg.index >= cg.windows.length - 1;  // at the right end the map follows new windows
  renderMapAt();
}

// ------------------------------------------------------------------ volumes, speeds, turns

function approachKey(r) { return `${r.intersection_id}/${r.approach_id}`; }

function renderIntersectionVolumes(volRows, congRows) {
  const table = document.getElementById("iv-table");
  const classes = [...new Set(volRows.map(r => r.class_name))].sort();
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {text: "approach"}), el("th", {text: "direction"}),
    ...classes.map(c => el("th", {class: "n", text: c})), el("th", {class: "n", text: "total"}))));
  const body = el("tbody");
  for (const [key, rs] of [...groupBy(volRows, r => `${approachKey(r)}|${r.flow_direction}`).entries()].sort()) {
    const [ap, flow] = key.split("|");
    const [x, a] = ap.split("/");
    const tr = el("tr", {}, el("th", {scope: "row", text: ap}), el("td", {text: flow}));
    for (const c of classes) {
      const cs = rs.filter(r => r.class_name === c);
      tr.append(cs.length ? countCell(`iv-${x}-${a}-${flow}-${c}`, tally(cs.map(r => r.count)), "intersection_volume")
                          : el("td", {class: "n muted", text: "·"}));
    }
    const total = countCell(`iv-total-${x}-${a}-${flow}`, tally(rs.map(r => r.count)), "intersection_volume");
    total.classList.add("total");
    tr.append(total);
    body.append(tr);
  }
  table.append(body);
  if (!volRows.length) table.append(el("caption", {class: "empty", text: "no intersection volumes in the shown period"}));

  // vehicles entering per approach and window (published counts; a withheld window is a gap)
  const entering = volRows.filter(r => r.flow_direction === "entering");
  const vWindows = windowsOf(entering);
  const vSets = [...groupBy(entering, approachKey).entries()].sort().map(([ap, rs], i) => {
    const byWin = groupBy(rs, r => r.window_start);
    return {label: ap, backgroundColor: colourAt(i), data: vWindows.map(w => {
      const t = tally((byWin.get(w) || []).map(r => r.count)); return t.known ? t.sum : null; })};
  });
  upsertChart("chart-iv", {type: "bar", data: {labels: vWindows.map(hhmm), datasets: vSets},
    options: chartOptions({scales: {x: {ticks: TIME_TICKS}, y: {beginAtZero: true,
      title: {display: true, text: "vehicles entering"}}}})});
  // speed in the lane zones per approach (congestion windows)
  const cWindows = windowsOf(congRows);
  const sSets = [...groupBy(congRows, approachKey).entries()].sort().map(([ap, rs], i) => {
    const byWin = new Map(rs.map(r => [r.window_start, r.mean_speed_kmh ?? null]));
    return {label: ap, data: cWindows.map(w => byWin.get(w) ?? null), borderColor: colourAt(i),
            backgroundColor: colourAt(i), spanGaps: true, tension: 0.25};
  });
  upsertChart("chart-cg-speed", {type: "line", data: {labels: cWindows.map(hhmm), datasets: sSets},
    options: chartOptions({scales: {x: {ticks: TIME_TICKS}, y: {beginAtZero: true,
      title: {display: true, text: "km/h in the lane zones"}}}})});
}

function renderTurns(rows) {
  const box = document.getElementById("tm-tables");
  box.replaceChildren();
  const xs = site.intersections || [];
  if (!rows.length) { emptyNote(box, "no turning movements in the shown period (a camera must see two approaches)"); return; }
  for (const x of xs) {
    const ids = x.approaches.map(a => a.id);
    const cells = groupBy(rows.filter(r => r.intersection_id === x.id), r => `${r.entry_approach_id}|${r.exit_approach_id}`);
    if (!cells.size) continue;
    const table = el("table", {class: "od", "aria-label": `turning movements at ${x.id}`},
      el("caption", {text: x.name || x.id}),
      el("thead", {}, el("tr", {}, el("th", {class: "corner", text: "from ↓  to →"}),
        ...ids.map(a => el("th", {scope: "col", text: a})))));
    const body = el("tbody");
    for (const o of ids) {
      const tr = el("tr", {}, el("th", {scope: "row", text: o}));
      for (const d of ids) {
        const rs = cells.get(`${o}|${d}`);
        tr.append(rs ? countCell(`tm-${x.id}-${o}-${d}`, tally(rs.map(r => r.count)), "turning_movements")
                     : el("td", {class: "od-none", text: "·"}));
      }
      body.append(tr);
    }
    table.append(body);
    box.append(table);
  }
}

// ------------------------------------------------------------------ colours

function renderColours(rows) {
  const table = document.getElementById("vc-table");
  const families = ["white", "black", "grey", "red", "blue", "other", "unknown"]
    .filter(f => rows.some(r => r.colour_family === f));
  const classes = [...new Set(rows.map(r => r.class_name))].sort();
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {text: "type"}),
    ...families.map(f => el("th", {class: "n"}, el("span", {class: "swatch", style: `background:${FAMILY_COLOURS[f]}`}),
                            ` ${f}`)))));
  const body = el("tbody");
  const cells = groupBy(rows, r => `${r.class_name}|${r.colour_family}`);
  for (const c of classes) {
    const tr = el("tr", {}, el("th", {scope: "row", text: c}));
    for (const f of families) {
      const rs = cells.get(`${c}|${f}`);
      tr.append(rs ? countCell(`vc-${c}-${f}`, tally(rs.map(r => r.count)), "vehicle_colours")
                   : el("td", {class: "n muted", text: "·"}));
    }
    body.append(tr);
  }
  table.append(body);
  if (!rows.length) table.append(el("caption", {class: "empty", text: "no vehicle colours in the shown period"}));
  upsertChart("chart-vc", {type: "bar", data: {labels: classes, datasets: families.map(f => ({
      label: f, backgroundColor: FAMILY_COLOURS[f], borderColor: "#868e96", borderWidth: 1,
      data: classes.map(c => { const t = tally((cells.get(`${c}|${f}`) || []).map(r => r.count)); return t.known ? t.sum : null; })}))},
    options: chartOptions({indexAxis: "y", scales: {x: {stacked: true, beginAtZero: true,
      title: {display: true, text: "vehicles"}}, y: {stacked: true}}})});
}

window.addEventListener("DOMContentLoaded", () => {
  renderLosLegend();
  document.getElementById("cg-slider").addEventListener("input", onSlider);
});
