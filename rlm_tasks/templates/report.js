// Draws the task graph and the attempts' timeline from the run's data (the JSON block above): no network,
// no library. Text goes in with textContent only, never as markup.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("rlm-data").textContent);
  var FILL = {fresh: "#d4edda", partial: "#d1ecf1", stale: "#fff3cd", missing: "#e2e3e5", invalid: "#f8d7da",
              failed: "#f8d7da", interrupted: "#f8d7da", running: "#cce5ff"};
  var STROKE = {fresh: "#28a745", partial: "#17a2b8", stale: "#d39e00", missing: "#6c757d", invalid: "#dc3545",
                failed: "#dc3545", interrupted: "#dc3545", running: "#007bff"};

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attrs) { node.setAttribute(key, String(attrs[key])); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x, y, value, attrs) {
    var node = el("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    node.textContent = value;
    return node;
  }

  function graph() {
    var groups = data.groups, W = 190, H = 40, GX = 60, GY = 16;
    var columns = {};
    groups.forEach(function (g) { (columns[g.depth] = columns[g.depth] || []).push(g); });
    var depths = Object.keys(columns).map(Number);
    var maxDepth = depths.length ? Math.max.apply(null, depths) : 0;
    var maxRows = Math.max.apply(null, [1].concat(depths.map(function (d) { return columns[d].length; })));
    var svg = el("svg", {width: (maxDepth + 1) * (W + GX) + 20, height: maxRows * (H + GY) + 20,
                         id: "graph-svg", role: "img"});
    var at = {};
    depths.forEach(function (d) {
      columns[d].forEach(function (g, row) { at[g.id] = {x: 10 + d * (W + GX), y: 10 + row * (H + GY)}; });
    });
    groups.forEach(function (g) {
      g.deps.forEach(function (dep) {
        var a = at[dep], b = at[g.id];
        if (!a || !b) { return; }
        el("path", {d: "M" + (a.x + W) + "," + (a.y + H / 2) + " C" + (a.x + W + GX / 2) + "," + (a.y + H / 2) +
                       " " + (b.x - GX / 2) + "," + (b.y + H / 2) + " " + b.x + "," + (b.y + H / 2),
                    fill: "none", stroke: "#999", "class": "edge"}, svg);
      });
    });
    groups.forEach(function (g) {
      var p = at[g.id], node = el("g", {"class": "node", "data-group": g.id}, svg);
      el("rect", {x: p.x, y: p.y, width: W, height: H, rx: 5, fill: FILL[g.state] || "#fff",
                  stroke: STROKE[g.state] || "#333"}, node);
      text(node, p.x + 6, p.y + 15, g.label.length > 30 ? g.label.slice(0, 29) + "…" : g.label);
      text(node, p.x + 6, p.y + 31, g.summary.length > 34 ? g.summary.slice(0, 33) + "…" : g.summary,
           {fill: "#555"});
      el("title", {}, node).textContent = g.label + ": " + g.summary;
    });
    document.getElementById("graph-view").appendChild(svg);
  }

  function timeline() {
    var rows = data.rows, attempts = data.attempts, LABEL = 220, ROW = 18, WIDTH = 900;
    var t0 = Infinity, t1 = -Infinity;
    attempts.forEach(function (a) { t0 = Math.min(t0, a.start); t1 = Math.max(t1, a.end); });
    data.markers.forEach(function (m) { t0 = Math.min(t0, m.at); t1 = Math.max(t1, m.at); });
    if (!isFinite(t0)) { t0 = 0; t1 = 1; }
    var span = Math.max(1, t1 - t0);
    function x(t) { return LABEL + (t - t0) / span * WIDTH; }
    var svg = el("svg", {width: LABEL + WIDTH + 20, height: rows.length * ROW + 40, id: "timeline-svg",
                         role: "img"});
    rows.forEach(function (r, i) {
      text(svg, 4, 14 + i * ROW, r.label.length > 34 ? r.label.slice(0, 33) + "…" : r.label);
      el("line", {x1: LABEL, x2: LABEL + WIDTH, y1: (i + 1) * ROW, y2: (i + 1) * ROW, stroke: "#f0f0f0"}, svg);
    });
    attempts.forEach(function (a) {
      var bar = el("rect", {x: x(a.start), y: a.row * ROW + 3, width: Math.max(2, x(a.end) - x(a.start)),
                            height: ROW - 6, "class": "bar o-" + (a.failed ? "failed" : a.outcome),
                            fill: a.failed ? "#dc3545" : (a.outcome === "partial" ? "#17a2b8" : "#28a745"),
                            "fill-opacity": rows[a.row].many ? 0.35 : 0.85}, svg);
      el("title", {}, bar).textContent = a.task + " attempt " + a.attempt + " (" + a.tier + "): " + a.outcome +
        ", " + (a.end - a.start).toFixed(1) + "s";
    });
    data.markers.forEach(function (m) {
      var row = m.row === null ? rows.length : m.row;
      var mark = el("circle", {cx: x(m.at), cy: row * ROW + ROW / 2, r: 4, "class": "marker m-" + m.kind,
                               fill: m.kind === "retry" ? "#d39e00" : "#6f42c1"}, svg);
      el("title", {}, mark).textContent = m.kind + (m.task ? " " + m.task : "") + (m.message ? ": " + m.message : "");
    });
    text(svg, LABEL, rows.length * ROW + 30, new Date(t0 * 1000).toISOString() + " + " + span.toFixed(1) + "s",
         {fill: "#555"});
    document.getElementById("timeline-view").appendChild(svg);
  }

  graph();
  timeline();
  document.body.setAttribute("data-rendered", "graph timeline");
})();
