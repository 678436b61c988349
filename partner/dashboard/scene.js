/* Icon scenes (G4, G5: people shown as icons only): every camera's latest processed frame redrawn from
 * its detection record alone — class and box of each object, nothing else, not one pixel of the camera.
 * People are the #person pictogram, vehicles a car/bus/truck/two-wheeler outline, road furniture a sign,
 * each at its box, scaled to its height. For a mobile camera, the vehicle's own cell, heading and speed.
 *
 * Reads GET /api/v1/operator/scene/{camera} every refresh; own section, own loop (see README.md).
 * Test hooks: svg[data-testid="scene-{camera}"] with data-objects; each icon g[data-class].
 */
"use strict";

(() => {
  const API = "/api/v1/operator";
  const NS = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const REFRESH_S = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 300);
  const VEHICLES = {car: "#icon-car", truck: "#icon-truck", bus: "#icon-bus", motorcycle: "#icon-two-wheeler",
                    bicycle: "#icon-two-wheeler"};
  const SIGNS = {"traffic light": "#icon-traffic-light", "stop sign": "#icon-stop-sign",
                 "fire hydrant": "#icon-hydrant", "parking meter": "#icon-post", bench: "#icon-bench"};
  const COLOURS = {person: "#1565c0", vehicle: "#37474f", sign: "#c62828", other: "#6d4c41"};

  function s(tag, attrs = {}, ...children) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function kindOf(cls) {
    if (cls === "person") return "person";
    if (cls in VEHICLES) return "vehicle";
    if (cls in SIGNS) return "sign";
    return "other";
  }

  /** One object as an icon at its box: the symbol fills the box height, centred on the box. */
  function icon(obj, w, h) {
    const [x1, y1, x2, y2] = obj.box;
    const bw = Math.max((x2 - x1) * w, 2), bh = Math.max((y2 - y1) * h, 2);
    const kind = kindOf(obj.class_name);
    const href = kind === "person" ? "#person" : (VEHICLES[obj.class_name] || SIGNS[obj.class_name] || "#icon-object");
    const size = kind === "vehicle" ? Math.max(bw, bh) : bh;  // vehicles are wide, people and signs tall
    const g = s("g", {"data-class": obj.class_name, class: `scene-icon ${kind}`},
      s("title", {}, obj.class_name),
      s("rect", {x: x1 * w, y: y1 * h, width: bw, height: bh, class: "scene-box"}),
      s("use", {href, x: x1 * w + bw / 2 - size / 2, y: y1 * h + bh / 2 - size / 2, width: size, height: size,
                fill: COLOURS[kind]}));
    return g;
  }

  function drawScene(card, scene) {
    const w = scene.frame_width || 640, h = scene.frame_height || 360;
    const objs = scene.objects || [];
    const svg = s("svg", {viewBox: `0 0 ${w} ${h}`, class: "scene", role: "img",
                          "data-testid": `scene-${scene.camera_id}`, "data-objects": String(objs.length),
                          "aria-label": `camera ${scene.camera_id}: ${objs.length} objects, drawn as icons`});
    svg.append(s("rect", {x: 0, y: 0, width: w, height: h, class: "scene-ground"}));
    if (scene.kind === "mobile") {  // a forward view: the road ahead converging on the horizon
      svg.append(s("polygon", {points: `${w * 0.05},${h} ${w * 0.45},${h * 0.42} ${w * 0.55},${h * 0.42} ${w * 0.95},${h}`,
                               class: "scene-road"}));
    }
    const order = {sign: 0, other: 1, vehicle: 2, person: 3};  // people drawn last: never hidden
    [...objs].sort((a, b) => order[kindOf(a.class_name)] - order[kindOf(b.class_name)])
      .forEach(o => svg.append(icon(o, w, h)));
    const body = card.querySelector(".scene-body");
    body.replaceChildren(svg);
    const counts = {};
    objs.forEach(o => { counts[o.class_name] = (counts[o.class_name] || 0) + 1; });
    const when = scene.ts ? new Date(scene.ts).toISOString().slice(11, 19) + " UTC" : "no frame yet";
    const parts = Object.entries(counts).map(([c, n]) => `${n} ${c}`);
    let line = `${when} · ${parts.length ? parts.join(", ") : "nothing in view"}`;
    if (scene.probe && scene.probe.h3_cell) {
      const p = scene.probe;
      line += ` · cell ${p.h3_cell} heading ${p.probe_heading || "?"} ${p.probe_speed_kmh ?? "?"} km/h` +
              ` · ${p.vehicles_ahead ?? 0} ahead${p.ahead_band ? " (" + p.ahead_band + ")" : ""}`;
    }
    card.querySelector(".scene-caption").textContent = line;
  }

  function card(camera, kind) {
    const c = document.createElement("figure");
    c.className = "scene-card";
    c.dataset.camera = camera;
    const cap = document.createElement("figcaption");
    cap.innerHTML = `<strong></strong> <span class="muted"></span><div class="scene-caption muted">…</div>`;
    cap.querySelector("strong").textContent = camera;
    cap.querySelector("span").textContent = kind === "mobile" ? "vehicle-mounted" : "fixed";
    const body = document.createElement("div");
    body.className = "scene-body";
    c.append(body, cap);
    return c;
  }

  let cameras = null;

  function operatorAuth() { return window.operatorHeaders ? window.operatorHeaders() : {}; }

  async function getJSON(url) {
    // the operator's token, as app.js keeps it (the scene is operator data, like every table here)
    if (!operatorAuth().Authorization) throw new Error("not signed in");  // app.js shows the sign-in form
    const r = await fetch(url, {cache: "no-store", headers: {Accept: "application/json", ...operatorAuth()}});
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }

  async function refresh() {
    const box = document.getElementById("scenes");
    try {
      if (cameras === null) {
        const site = await getJSON(`${API}/site`);
        const mobile = new Set(site.mobile_cameras || []);
        cameras = site.cameras.map(id => ({id, kind: mobile.has(id) ? "mobile" : "fixed"}));
        box.replaceChildren(...cameras.map(c => card(c.id, c.kind)));
      }
      const scenes = await Promise.all(cameras.map(c => getJSON(`${API}/scene/${encodeURIComponent(c.id)}`)));
      scenes.forEach((sc, i) => drawScene(box.children[i], sc));
      box.dataset.state = "ready";
    } catch (e) {
      box.dataset.state = "stale";
      box.title = String(e);
    } finally {
      setTimeout(refresh, REFRESH_S * 1000);
    }
  }

  window.addEventListener("DOMContentLoaded", refresh);
})();
