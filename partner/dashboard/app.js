/* privaflow live dashboard: polls the operator API and redraws every few seconds.
 *
 * Query parameters: ?minutes=60 (period shown), ?refresh=5 (seconds), ?plan=URL (floor plan drawn
 * under every camera's schematic), ?from=&to= (fixed ISO period instead of the last `minutes`),
 * ?hours=3 (what the congestion map's time slider spans, ending at `to`).
 * ?as=PARTNER (start in "as partner X sees it"). #token=… in the URL fills in the operator's token
 * (kept in this tab's sessionStorage, then removed from the address bar).
 *
 * The operator view shows every closed window before any suppression, so the API wants the
 * operator's token; the switch in the header shows exactly what one partner receives instead.
 *
 * Every number put in the DOM carries data-testid + data-value so tests compare it with the API.
 * A withheld (k-anonymised) cell is never added in as 0: totals add published cells only and say how
 * many were withheld (data-suppressed); a total of withheld cells only reads "<k".
 * The schematic and crowding cards live in crowding.js; charts are Chart.js (vendor/).
 */
"use strict";

const API = "/api/v1/operator";
// the tables and their labels come from the server (streams/tables.py declares each once); the
// sections that draw them are this page's
let TABLES = [];
const SECTION = {traffic_volume: "sec-traffic", occupancy: "sec-crowding", flow_lines: "sec-flow",
                 dwell: "sec-dwell", attributes: "sec-attributes", congestion: "sec-intersection",
                 intersection_volume: "sec-intersection", turning_movements: "sec-intersection",
                 vehicle_colours: "sec-colours"};
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#7f7f7f", "#d62728"];
// one hue family per counting line, so a line's stack reads as one block; shades tell its series apart
const LINE_SHADES = [["#08519c", "#3182bd", "#6baed6", "#9ecae1", "#c6dbef"],
                     ["#a63603", "#e6550d", "#fd8d3c", "#fdae6b", "#fdd0a2"],
                     ["#006d2c", "#31a354", "#74c476", "#a1d99b", "#c7e9c0"],
                     ["#54278f", "#756bb1", "#9e9ac8", "#bcbddc", "#dadaeb"],
                     ["#7f2704", "#a63603", "#d94801", "#f16913", "#fd8d3c"]];
const GENDER_COLOURS = {female: "#7b3294", male: "#008837", unknown: "#9e9e9e"};

const params = new URLSearchParams(location.search);
const REFRESH_S = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 300);
const MINUTES = Math.max(Number(params.get("minutes")) || 60, 1);
const HOURS = Math.min(Math.max(Number(params.get("hours")) || 3, 0.25), 48);

const charts = {};
let site = null;
let refreshes = 0;
let timer = null;
const TOKEN_KEY = "privaflow-operator-token";
let view = params.get("as") || "";  // "" = the operator's own view; else a partner id

class AuthError extends Error {}

/** The operator's token: from #token=… (then dropped from the address bar) or this tab's storage. */
function readToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The Authorization header for the operator routes (also used by scene.js and roadmap.js). */
window.operatorHeaders = () => {
  const token = readToken();
  return token ? {Authorization: `Bearer ${token}`} : {};
};

function viewedPartner() { return view ? (site.partners || []).find(p => p.id === view) || null : null; }

// ------------------------------------------------------------------ small helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function hhmm(iso) {
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
}

function fmt(x, digits = 0) {
  return Number(x).toLocaleString(undefined, {maximumFractionDigits: digits, minimumFractionDigits: digits});
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  return s < 90 ? `${fmt(s, s < 10 ? 1 : 0)} s` : `${fmt(s / 60, 1)} min`;
}

function colourAt(i) { return PALETTE[i % PALETTE.length]; }

/** Sum of published counts and number of withheld cells: {sum, known, suppressed}. */
function tally(counts) {
  const t = {sum: 0, known: 0, suppressed: 0};
  for (const c of counts) {
    if (c === null || c === undefined) t.suppressed += 1; else { t.sum += c; t.known += 1; }
  }
  return t;
}

/** The k a table is published with: the strictest of the k-anonymity partners receiving it (one
 * shared topic per table, streams/disclosure.py). */
function kOf(table) {
  const ks = (site.partners || []).filter(p => (p.tables || []).includes(table) && p.k_anonymity)
    .map(p => p.k_anonymity);
  return ks.length ? `<${Math.max(...ks)}` : "<k";
}

/** A count cell: the published sum, "+n withheld" for withheld cells, or "<k" alone when nothing was published. */
function countCell(testid, t, table) {
  const cell = el("td", {class: "n", "data-testid": testid, "data-suppressed": String(t.suppressed)});
  if (t.known === 0 && t.suppressed > 0) {
    cell.dataset.value = "suppressed";
    cell.append(el("span", {class: "supp", title: "suppressed: below the k-anonymity threshold", text: kOf(table)}));
  } else {
    cell.dataset.value = String(t.sum);
    cell.append(el("span", {class: "num", text: fmt(t.sum)}));
    if (t.suppressed > 0) {
      cell.append(el("span", {class: "supp small withheld",
                              title: `${t.suppressed} more cell(s) below the k-anonymity threshold (${kOf(table)}), not added in`,
                              text: `+${t.suppressed} withheld`}));
    }
  }
  return cell;
}

/** Mean of per-window values weighted by the window's published count (null when none). */
function weighted(pairs) {
  let w = 0, s = 0;
  for (const [value, weight] of pairs) {
    if (value === null || value === undefined || !weight) continue;
    s += value * weight; w += weight;
  }
  return w > 0 ? s / w : null;
}

function groupBy(rows, keyFn) {
  const m = new Map();
  for (const r of rows) {
    const k = keyFn(r);
    if (!m.has(k)) m.set(k, []);
    m.get(k).push(r);
  }
  return m;
}

function windowsOf(rows) { return [...new Set(rows.map(r => r.window_start))].sort(); }

function upsertChart(id, config) {
  const old = charts[id];
  if (old) {
    old.data = config.data;
    old.options = config.options;
    old.update("none");
    return old;
  }
  charts[id] = new Chart(document.getElementById(id), config);
  return charts[id];
}

const TIME_TICKS = {maxRotation: 0, autoSkip: true, maxTicksLimit: 10};

function chartOptions(extra = {}) {
  return Object.assign({
    responsive: true, maintainAspectRatio: false, animation: false,
    interaction: {mode: "nearest", intersect: false},
    plugins: {legend: {position: "bottom", labels: {boxWidth: 12, usePointStyle: true}}},
  }, extra);
}

function emptyNote(container, text) {
  container.replaceChildren(el("p", {class: "empty", text}));
}

// ------------------------------------------------------------------ traffic volume and speed

function renderTraffic(rows) {
  const windows = windowsOf(rows);
  const series = [...groupBy(rows, r => `${r.line_id}|${r.direction}|${r.class_name}`).entries()].sort();
  const lines = [...new Set(series.map(([k]) => k.split("|")[0]))];
  const shadeUsed = new Map();
  const datasets = series.map(([key, rs]) => {
    const [line, dir, cls] = key.split("|");
    const li = lines.indexOf(line), si = shadeUsed.get(line) || 0;
    shadeUsed.set(line, si + 1);
    const byWin = new Map(rs.map(r => [r.window_start, r.count]));
    return {label: `${line} ${dir} · ${cls}`, stack: line,
            backgroundColor: LINE_SHADES[li % LINE_SHADES.length][si % 5],
            data: windows.map(w => (byWin.has(w) ? byWin.get(w) : null))};
  });
  upsertChart("chart-volume", {type: "bar", data: {labels: windows.map(hhmm), datasets},
    options: chartOptions({scales: {x: {stacked: true, ticks: TIME_TICKS}, y: {stacked: true, beginAtZero: true,
      title: {display: true, text: "crossings"}}},
      plugins: {legend: {position: "bottom", labels: {boxWidth: 12}}, tooltip: {callbacks: {
        label: c => `${c.dataset.label}: ${c.raw === null ? "withheld (<k)" : c.raw}`}}}})});

  const classes = [...new Set(rows.map(r => r.class_name))].sort();
  const table = document.getElementById("tv-table");
  table.replaceChildren();
  table.append(el("thead", {}, el("tr", {}, el("th", {text: "line"}), el("th", {text: "direction"}),
    ...classes.map(c => el("th", {class: "n", text: c})), el("th", {class: "n", text: "total"}))));
  const body = el("tbody");
  const byLineDir = [...groupBy(rows, r => `${r.line_id}|${r.direction}`).entries()].sort();
  let prevLine = null;
  for (const [key, rs] of byLineDir) {
    const [line, dir] = key.split("|");
    const tr = el("tr");
    if (line !== prevLine) {
      const span = byLineDir.filter(([k]) => k.split("|")[0] === line).length;
      tr.append(el("th", {scope: "rowgroup", rowspan: String(span), class: "line-id", text: line}));
      tr.classList.add("group-start");
      prevLine = line;
    }
    tr.append(el("td", {text: dir}));
    for (const c of classes) {
      const cs = rs.filter(r => r.class_name === c);
      tr.append(cs.length ? countCell(`tv-class-${line}-${dir}-${c}`, tally(cs.map(r => r.count)), "traffic_volume")
                          : el("td", {class: "n muted", text: "·"}));
    }
    tr.append(countCell(`tv-total-${line}-${dir}`, tally(rs.map(r => r.count)), "traffic_volume"));
    tr.lastChild.classList.add("total");
    body.append(tr);
  }
  table.append(body);
  renderSpeed(rows, windows);
  return totalsByLineDir(rows);
}

function totalsByLineDir(rows) {
  const out = new Map();
  for (const [k, rs] of groupBy(rows, r => `${r.line_id}|${r.direction}`)) out.set(k, tally(rs.map(r => r.count)));
  return out;
}

function renderSpeed(rows, windows) {
  const withSpeed = rows.filter(r => r.mean_speed_kmh !== null && r.mean_speed_kmh !== undefined);
  const block = document.getElementById("speed-block");
  block.hidden = withSpeed.length === 0;
  if (block.hidden) {
    document.getElementById("speed-table").replaceChildren();  // no stale numbers left behind
    return;
  }
  const series = groupBy(withSpeed, r => `${r.line_id}|${r.direction}|${r.class_name}`);
  const datasets = [];
  const table = document.getElementById("speed-table");
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {text: "line · direction · class"}),
    el("th", {class: "n", text: "mean"}), el("th", {class: "n", text: "p85"}), el("th", {text: "window"}))));
  const body = el("tbody");
  [...series.entries()].sort().forEach(([key, rs], i) => {
    const [line, dir, cls] = key.split("|");
    const byWin = new Map(rs.map(r => [r.window_start, r]));
    const pick = f => windows.map(w => (byWin.has(w) ? byWin.get(w)[f] : null));
    const label = `${line} ${dir} · ${cls}`;
    datasets.push({label: `${label} mean`, data: pick("mean_speed_kmh"), borderColor: colourAt(i),
                   backgroundColor: colourAt(i), spanGaps: true, tension: 0.25});
    datasets.push({label: `${label} p85`, data: pick("p85_speed_kmh"), borderColor: colourAt(i),
                   backgroundColor: colourAt(i), borderDash: [6, 4], pointStyle: "triangle", spanGaps: true,
                   tension: 0.25});
    const last = rs.reduce((a, b) => (a.window_start > b.window_start ? a : b));
    const id = `${line}-${dir}-${cls}`;
    body.append(el("tr", {}, el("td", {text: label}),
      el("td", {class: "n", "data-testid": `speed-mean-${id}`, "data-value": String(last.mean_speed_kmh),
                text: fmt(last.mean_speed_kmh, 1)}),
      el("td", {class: "n", "data-testid": `speed-p85-${id}`, "data-value": String(last.p85_speed_kmh),
                text: last.p85_speed_kmh === null ? "—" : fmt(last.p85_speed_kmh, 1)}),
      el("td", {class: "muted", text: hhmm(last.window_start)})));
  });
  table.append(body);
  upsertChart("chart-speed", {type: "line", data: {labels: windows.map(hhmm), datasets},
    options: chartOptions({scales: {x: {ticks: TIME_TICKS}, y: {beginAtZero: true, title: {display: true, text: "km/h"}}}})});
}

// ------------------------------------------------------------------ occupancy over time

function renderOccupancyChart(rows) {
  const windows = windowsOf(rows);
  const datasets = [...groupBy(rows, r => r.zone_id).entries()].sort().map(([zone, rs], i) => {
    const byWin = new Map(rs.map(r => [r.window_start, r.p95_present]));
    return {label: `${zone} (p95 present)`, data: windows.map(w => byWin.get(w) ?? null),
            borderColor: colourAt(i), backgroundColor: colourAt(i), spanGaps: true, tension: 0.25};
  });
  upsertChart("chart-occupancy", {type: "line", data: {labels: windows.map(hhmm), datasets},
    options: chartOptions({scales: {x: {ticks: TIME_TICKS}, y: {beginAtZero: true, title: {display: true, text: "people present"}}}})});
}

// ------------------------------------------------------------------ flow lines

function renderFlow(rows) {
  const table = document.getElementById("od-table");
  if (!rows.length) { table.replaceChildren(el("caption", {class: "empty", text: "no flow-line data in the shown period"})); return; }
  const zones = [...new Set([...(site.zones || []).map(z => z.id), ...rows.flatMap(r => [r.origin_zone_id,
    r.destination_zone_id])])];
  const cells = groupBy(rows, r => `${r.origin_zone_id}|${r.destination_zone_id}`);
  const max = Math.max(1, ...[...cells.values()].map(rs => tally(rs.map(r => r.count)).sum));
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {class: "corner", text: "from ↓  to →"}),
    ...zones.map(z => el("th", {scope: "col", text: z})))));
  const body = el("tbody");
  for (const o of zones) {
    const tr = el("tr", {}, el("th", {scope: "row", text: o}));
    for (const d of zones) {
      const rs = cells.get(`${o}|${d}`);
      if (!rs) { tr.append(el("td", {class: "od-none", text: "·"})); continue; }
      const t = tally(rs.map(r => r.count));
      const cell = countCell(`od-${o}-${d}`, t, "flow_lines");
      const travel = weighted(rs.map(r => [r.median_travel_s, r.count]));
      cell.append(el("div", {class: "travel", "data-testid": `od-travel-${o}-${d}`,
                             "data-value": travel === null ? "" : String(travel), text: seconds(travel)}));
      // heat shading: a DOM background, the number stays the reading
      cell.style.setProperty("--heat", String(t.known ? t.sum / max : 0));
      cell.classList.add("od-cell");
      tr.append(cell);
    }
    body.append(tr);
  }
  table.append(body);
}

// ------------------------------------------------------------------ dwell

function binLabels(upper) {
  return upper.map((u, i) => {
    const lo = i === 0 ? 0 : upper[i - 1];
    return Number.isFinite(u) ? `${fmt(lo)}–${fmt(u)} s` : `> ${fmt(lo)} s`;
  });
}

function renderDwell(rows) {
  const table = document.getElementById("dwell-table");
  if (!rows.length) { table.replaceChildren(el("caption", {class: "empty", text: "no dwell data in the shown period"})); return; }
  const upper = rows[0].bin_upper_s.map(u => (u === null || Number.isNaN(Number(u)) ? Infinity : Number(u)));
  const labels = binLabels(upper);
  const zones = [...groupBy(rows, r => r.zone_id).entries()].sort();
  const datasets = [];
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {text: "zone"}),
    ...labels.map(l => el("th", {class: "n", text: l})), el("th", {class: "n", text: "median"}))));
  const body = el("tbody");
  zones.forEach(([zone, rs], zi) => {
    const bins = labels.map((_, i) => tally(rs.map(r => r.bin_counts[i])));
    datasets.push({label: zone, backgroundColor: colourAt(zi),
                   data: bins.map(t => (t.known ? t.sum : null))});
    const tr = el("tr", {}, el("th", {scope: "row", text: zone}));
    bins.forEach((t, i) => tr.append(countCell(`dwell-${zone}-${i}`, t, "dwell")));
    const median = weighted(rs.map(r => [r.median_dwell_s, tally(r.bin_counts).sum]));
    tr.append(el("td", {class: "n", "data-testid": `dwell-median-${zone}`,
                        "data-value": median === null ? "" : String(median), text: seconds(median)}));
    body.append(tr);
  });
  table.append(body);
  upsertChart("chart-dwell", {type: "bar", data: {labels, datasets},
    options: chartOptions({scales: {y: {beginAtZero: true, title: {display: true, text: "visits"}}},
      plugins: {legend: {position: "bottom", labels: {boxWidth: 12}}, tooltip: {callbacks: {
        label: c => `${c.dataset.label}: ${c.raw === null ? "withheld (<k)" : c.raw}`}}}})});
}

// ------------------------------------------------------------------ attributes

function ageOrder(a, b) {
  const n = s => (/^\d/.test(s) ? parseInt(s, 10) : Infinity);
  return n(a) - n(b) || a.localeCompare(b);
}

function renderAttributes(rows) {
  const box = document.getElementById("attr-tables");
  if (!rows.length) { emptyNote(box, "no visitor attributes in the shown period"); return; }
  const ages = [...new Set(rows.map(r => r.age_bracket))].sort(ageOrder);
  const genders = [...new Set(rows.map(r => r.gender))].sort((a, b) => (a === "unknown") - (b === "unknown") || a.localeCompare(b));
  const places = [...groupBy(rows, r => r.place_id).entries()].sort();
  const datasets = [];
  box.replaceChildren();
  places.forEach(([place, rs]) => {
    const cells = groupBy(rs, r => `${r.age_bracket}|${r.gender}`);
    const table = el("table", {class: "numbers attr", "aria-label": `visitors at ${place}`},
      el("caption", {text: place}),
      el("thead", {}, el("tr", {}, el("th", {text: "age"}), ...genders.map(g => el("th", {class: "n", text: g})))));
    const body = el("tbody");
    for (const a of ages) {
      const tr = el("tr", {}, el("th", {scope: "row", text: a}));
      for (const g of genders) {
        const cs = cells.get(`${a}|${g}`);
        tr.append(cs ? countCell(`attr-${place}-${a}-${g}`, tally(cs.map(r => r.count)), "attributes")
                     : el("td", {class: "n muted", text: "·"}));
      }
      body.append(tr);
    }
    table.append(body);
    box.append(table);
    for (const g of genders) {
      datasets.push({label: places.length > 1 ? `${place} · ${g}` : g, stack: place,
        backgroundColor: GENDER_COLOURS[g] || colourAt(datasets.length),
        data: ages.map(a => { const t = tally((cells.get(`${a}|${g}`) || []).map(r => r.count)); return t.known ? t.sum : null; })});
    }
  });
  upsertChart("chart-attributes", {type: "bar", data: {labels: ages, datasets},
    options: chartOptions({indexAxis: "y", scales: {x: {stacked: true, beginAtZero: true,
      title: {display: true, text: "visitors"}}, y: {stacked: true}}})});
}

// ------------------------------------------------------------------ refresh loop

function period() {
  if (params.get("from")) return {from: params.get("from"), to: params.get("to") || new Date().toISOString()};
  const to = new Date();
  return {from: new Date(to.getTime() - MINUTES * 60000).toISOString(), to: to.toISOString()};
}

async function getJSON(url) {
  const headers = {Accept: "application/json"};
  const token = readToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(url, {cache: "no-store", headers});
  if (r.status === 401 || r.status === 403) {
    let why = `HTTP ${r.status}`;
    try { why = (await r.json()).error || why; } catch (_) { /* keep the status */ }
    throw new AuthError(why);
  }
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const text = await r.text();
  try {
    return JSON.parse(text);
  } catch (_) {
    // Python's json writes the dwell table's last bin edge (+inf) as a bare Infinity, which is
    // not JSON; read such a token (outside strings) as null, which binLabels treats as "no upper edge".
    return JSON.parse(text.replace(/([\[,:]\s*)-?(?:Infinity|NaN)(?=\s*[\],}])/g, "$1null"));
  }
}

/** The tables the current view shows: every table for the operator, a partner's own as it sees them. */
function publishedTables() {
  const p = viewedPartner();
  return p ? TABLES.filter(t => (p.tables || []).includes(t)) : TABLES;
}

/** The view switch: the operator's own view, or "as partner X sees it" for each partner. */
function renderViewSwitch() {
  const select = document.getElementById("view");
  select.replaceChildren(el("option", {value: "", text: "operator — before suppression"}),
    ...(site.partners || []).map(p => el("option", {value: p.id,
      text: `as ${p.name || p.id} sees it (${p.mechanism === "laplace" ? "differential privacy" : `k = ${p.k_anonymity}`})`})));
  if (view && !viewedPartner()) view = "";
  select.value = view;
  select.onchange = () => {
    view = select.value;
    const url = new URL(location.href);
    if (view) url.searchParams.set("as", view); else url.searchParams.delete("as");
    history.replaceState(null, "", url);
    clearTimeout(timer);
    refresh();
  };
  select.disabled = false;
}

function renderViewNote() {
  const note = document.getElementById("view-note");
  const p = viewedPartner();
  document.body.dataset.view = view || "operator";
  if (!p) {
    note.textContent = "operator view: counts before any suppression — no partner ever receives these";
  } else if (p.mechanism === "laplace") {
    note.textContent = `as ${p.name || p.id} sees it: every cell with noise (differential privacy); statistics withheld`;
  } else {
    note.textContent = `as ${p.name || p.id} sees it: cells below ${kOf(p.tables[0]).slice(1)} are not published (absent means fewer, possibly none)`;
  }
  note.className = p ? "view-note partner" : "view-note operator";
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.querySelector("main").hidden = true;
  const err = document.getElementById("login-error");
  err.textContent = message || "";
  document.body.dataset.state = "login";
  document.getElementById("token").focus();
}

let generation = 0;  // a refresh started before the view changed must not draw over the new one

async function refresh() {
  const health = document.getElementById("health");
  const mine = ++generation;
  try {
    if (!readToken()) {
      showLogin("");
      return;
    }
    if (!site) {
      site = await getJSON(`${API}/site`);
      document.getElementById("site-id").textContent = site.site_id;
      document.getElementById("site-id").dataset.value = site.site_id;
      document.title = `privaflow — ${site.site_id}`;
      TABLES = (site.tables || []).map(t => t.name);
      renderViewSwitch();
    }
    document.getElementById("login").hidden = true;
    document.querySelector("main").hidden = false;
    renderViewNote();
    const {from, to} = period();
    const tables = publishedTables();
    const q = new URLSearchParams({site: site.site_id, from, to});
    if (view) q.set("as", view);
    const results = await Promise.all(tables.map(t => getJSON(`${API}/tables/${t}?${q}`).then(j => j.rows || [])));
    const data = Object.fromEntries(TABLES.map(t => [t, []]));
    tables.forEach((t, i) => { data[t] = results[i]; });
    // the congestion map's slider spans the last hours up to the same end
    const intersections = (site.intersections || []).length > 0;
    const mapFrom = new Date(new Date(to).getTime() - HOURS * 3600000).toISOString();
    const mapQuery = new URLSearchParams({site: site.site_id, from: mapFrom, to});
    if (view) mapQuery.set("as", view);
    const mapRows = intersections && tables.includes("congestion")
      ? (await getJSON(`${API}/tables/congestion?${mapQuery}`)).rows || []
      : [];
    if (mine !== generation) return;  // superseded (the view switched while this one was fetching)
    // render everything in one synchronous pass so a reader never sees two periods mixed; a table drawn by
    // its own script (road_conditions: roadmap.js) has no entry in SECTION and shows itself
    const shownSections = new Set(["sec-crowding", ...tables.map(t => SECTION[t]).filter(Boolean)]);
    if (!intersections) shownSections.delete("sec-intersection");
    for (const id of new Set(Object.values(SECTION))) document.getElementById(id).hidden = !shownSections.has(id);
    const totals = renderTraffic(data.traffic_volume);
    renderCrowding(site, data.occupancy, totals, params.get("plan"));
    renderOccupancyChart(data.occupancy);
    renderFlow(data.flow_lines);
    renderDwell(data.dwell);
    renderAttributes(data.attributes);
    if (shownSections.has("sec-intersection")) {
      renderCongestionMap(mapRows, mapFrom, to);
      renderIntersectionVolumes(data.intersection_volume, data.congestion);
      renderTurns(data.turning_movements);
    } else {  // a view without the intersection's tables: no number of it stays on the page
      document.querySelectorAll("#sec-intersection [data-value]").forEach(e => e.removeAttribute("data-value"));
    }
    renderColours(data.vehicle_colours);
    const now = new Date();
    const lu = document.getElementById("last-updated");
    lu.textContent = now.toLocaleTimeString([], {hourCycle: "h23"});
    lu.dataset.value = now.toISOString();
    document.getElementById("range").textContent = `showing ${hhmm(from)} – ${hhmm(to)} · refresh every ${REFRESH_S} s`;
    Object.assign(document.body.dataset, {from, to, state: "ready", refreshes: String(++refreshes)});
    health.textContent = "";
    health.className = "health";
    timer = setTimeout(refresh, REFRESH_S * 1000);
  } catch (err) {
    if (err instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      site = null;
      showLogin(`not signed in: ${err.message}`);
      return;  // no polling until a token is given
    }
    console.error(err);
    health.textContent = `stale — ${err.message}`;
    health.className = "health bad";
    timer = setTimeout(refresh, REFRESH_S * 1000);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif";
  Chart.defaults.font.size = 13;
  Chart.defaults.color = "#33363d";
  renderLevelLegend();
  document.getElementById("login-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    clearTimeout(timer);
    refresh();
  });
  window.addEventListener("hashchange", () => {  // a link with #token=… opened in this tab
    if (/(?:^#|&)token=/.test(location.hash)) { clearTimeout(timer); refresh(); }
  });
  refresh();
});
