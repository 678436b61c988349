/* Road-condition map (G4, T5: congestion shown graphically): the H3 cells that mobile cameras' trips
 * passed, as polygons coloured by congestion level (latest closed window in the period, the worst of
 * its directions). No map tiles: the cells alone, drawn in an equirectangular projection scaled by the
 * cosine of their mean latitude, with a scale bar. Only cells at least k distinct trips passed exist
 * on the partner topic, so only those are drawn.
 *
 * Reads GET /api/v1/operator/road-map?from&to every refresh; shown only when the site has a mobile camera.
 * Test hooks: svg[data-testid="road-map"] with data-cells; each polygon [data-testid="road-cell-{cell}"]
 * with data-level.
 */
"use strict";

(() => {
  const API = "/api/v1/operator";
  const NS = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const REFRESH_S = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 300);
  const MINUTES = Math.min(Math.max(Number(params.get("minutes")) || 60, 1), 7 * 24 * 60);
  const LEVELS = ["FREE", "SLOW", "CONGESTED", "JAMMED"];
  const COLOURS = {FREE: "#1a9641", SLOW: "#f2c12e", CONGESTED: "#e08214", JAMMED: "#c62828"};
  const WORDS = {FREE: "free flow", SLOW: "slow", CONGESTED: "congested", JAMMED: "jammed"};
  const W = 720, H = 420, PAD = 24;

  function s(tag, attrs = {}, ...children) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function legend() {
    const box = document.getElementById("road-legend");
    box.replaceChildren(...LEVELS.map(l => {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.innerHTML = `<i style="background:${COLOURS[l]}"></i>`;
      item.append(`${l} (${WORDS[l]})`);
      return item;
    }));
  }

  function draw(map) {
    const cells = map.cells || [];
    const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, class: "road-map", role: "img", "data-testid": "road-map",
                          "data-cells": String(cells.length),
                          "aria-label": `${cells.length} road cells coloured by congestion level`});
    svg.append(s("rect", {x: 0, y: 0, width: W, height: H, class: "road-map-bg"}));
    if (!cells.length) {
      svg.append(s("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted"},
                   "no road cell with enough trips yet"));
      return svg;
    }
    const pts = cells.flatMap(c => c.boundary);
    const lat0 = pts.reduce((a, p) => a + p[0], 0) / pts.length;
    const kx = Math.cos(lat0 * Math.PI / 180);
    const xs = pts.map(p => p[1] * kx), ys = pts.map(p => p[0]);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const scale = Math.min((W - 2 * PAD) / Math.max(maxX - minX, 1e-9), (H - 2 * PAD - 20) / Math.max(maxY - minY, 1e-9));
    const ox = (W - (maxX - minX) * scale) / 2, oy = (H - 20 - (maxY - minY) * scale) / 2;
    const proj = ([lat, lon]) => [ox + (lon * kx - minX) * scale, oy + (maxY - lat) * scale];
    for (const c of cells) {
      const points = c.boundary.map(proj).map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
      const level = c.congestion_level || "unknown";
      const speed = c.median_speed_kmh == null ? "speed withheld" : `${Math.round(c.median_speed_kmh)} km/h`;
      svg.append(s("polygon", {points, class: "road-cell", fill: COLOURS[level] || "#bdbdbd",
                               "data-testid": `road-cell-${c.h3_cell}`, "data-level": level},
                   s("title", {}, `${c.h3_cell}: ${level}, ${speed}, ${c.trips} trips, heading ${c.heading}`)));
    }
    // scale bar: 1 degree of latitude is 111.2 km
    const metres = 500;
    const px = metres / 111_195 * scale;
    svg.append(s("g", {class: "scale-bar"},
      s("line", {x1: PAD, y1: H - 14, x2: PAD + px, y2: H - 14}),
      s("text", {x: PAD + px + 6, y: H - 10}, `${metres} m`)));
    return svg;
  }

  async function refresh() {
    const box = document.getElementById("road-map");
    try {
      const auth = window.operatorHeaders ? window.operatorHeaders() : {};  // the operator's token (app.js)
      if (!auth.Authorization) return;  // not signed in yet: app.js shows the sign-in form
      const siteAnswer = await fetch(`${API}/site`, {cache: "no-store", headers: auth});
      if (!siteAnswer.ok) throw new Error(`site: HTTP ${siteAnswer.status}`);
      const site = await siteAnswer.json();
      const section = document.getElementById("sec-road");
      if (!(site.mobile_cameras || []).length) {
        section.hidden = true;
        return;
      }
      section.hidden = false;
      const to = new Date(), from = new Date(to.getTime() - MINUTES * 60_000);
      const q = new URLSearchParams({from: from.toISOString(), to: to.toISOString()});
      const r = await fetch(`${API}/road-map?${q}`, {cache: "no-store", headers: auth});
      if (!r.ok) throw new Error(`road-map: HTTP ${r.status}`);
      box.replaceChildren(draw(await r.json()));
      box.dataset.state = "ready";
    } catch (e) {
      box.dataset.state = "stale";
      box.title = String(e);
    }
    setTimeout(refresh, REFRESH_S * 1000);
  }

  window.addEventListener("DOMContentLoaded", () => { legend(); refresh(); });
})();
