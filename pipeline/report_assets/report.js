/* The run report: draws every panel from the JSON in #report-data. Text always goes in as text (never as
   HTML), and the timeline is one <canvas> so that tens of thousands of bars draw and hover quickly. */
(function () {
  "use strict";

  var facts = JSON.parse(document.getElementById("report-data").textContent);
  var PARTS = ["read", "compute", "exchange", "write", "serialise", "other", "queued"];
  var PART_COLOUR = {read: "#4e79a7", compute: "#59a14f", exchange: "#f28e2b", write: "#b07aa1",
                     serialise: "#edc948", other: "#bab0ac", queued: "#e7e7e7"};
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
                 "#8cd17d", "#86bcb6", "#f1ce63", "#a0cbe8", "#ffbe7d", "#d4a6c8"];
  var BAD = "#c62828";

  // ---- small helpers --------------------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "style") Object.assign(node.style, attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) node.appendChild(c); });
    return node;
  }
  function body(id) { return document.getElementById(id + "-body"); }
  function none(text) { return el("p", {"class": "none", text: text}); }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0 s";
    if (Math.abs(v) < 1) return (v * 1000).toFixed(Math.abs(v) < 0.01 ? 2 : 1) + " ms";
    return v.toFixed(Math.abs(v) < 10 ? 3 : 2) + " s";
  }
  function tick(t, step) {  // an axis label with as many decimals as the tick step needs
    var ms = step < 1, v = ms ? t * 1000 : t, s = ms ? step * 1000 : step;
    return v.toFixed(Math.max(0, -Math.floor(Math.log10(s) + 1e-9))) + (ms ? " ms" : " s");
  }
  function count(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); }
  function bytes(v) {
    if (!v) return v === 0 ? "0 B" : "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  }
  function table(heads, rows, numeric) {
    var head = el("tr", {}, heads.map(function (h, i) {
      return el("th", {"class": numeric[i] === true ? "num" : "", text: h});
    }));
    var lines = rows.map(function (cells) {
      return el("tr", {}, cells.map(function (c, i) {
        if (c instanceof Node) return el("td", {"class": numeric[i] === "bar" ? "bar" : ""}, [c]);
        return el("td", {"class": numeric[i] === true ? "num" : numeric[i] || "", text: c});
      }));
    });
    return el("div", {"class": "scroll"}, [el("table", {}, [el("thead", {}, [head]), el("tbody", {}, lines)])]);
  }
  function colourOf(labels) {
    var map = {};
    labels.forEach(function (label, i) {
      map[label] = i < PALETTE.length ? PALETTE[i] : "hsl(" + Math.round((i * 137.5) % 360) + ",55%,60%)";
    });
    return map;
  }

  var task = {};  // column name -> index in tasks.rows
  (facts.tasks.columns || []).forEach(function (name, i) { task[name] = i; });
  var rows = facts.tasks.rows || [];
  var labels = [];
  (facts.stages || []).forEach(function (s) { if (labels.indexOf(s.label) < 0) labels.push(s.label); });
  rows.forEach(function (r) { if (labels.indexOf(r[task.label]) < 0) labels.push(r[task.label]); });
  var COLOUR = colourOf(labels);

  // ---- header ---------------------------------------------------------------------------------------------

  function header() {
    var items = [["engine", facts.engine || "–"], ["wall time", secs(facts.seconds)],
                 ["start-up", secs(facts.startup || 0)],
                 ["tasks", count(facts.tasks.total)], ["workers", count((facts.workers || []).length)],
                 ["status", facts.error ? "failed" : "succeeded"]];
    var list = el("dl", {"class": "facts"}, items.map(function (kv) {
      return el("div", {}, [el("dt", {text: kv[0]}), el("dd", {text: kv[1], "class": kv[0] === "status" && facts.error ? "error" : ""})]);
    }));
    var out = body("header");
    out.appendChild(list);
    if (facts.error) out.appendChild(el("pre", {"class": "error", id: "run-error", text: facts.error}));
  }

  // ---- timeline -------------------------------------------------------------------------------------------

  function naturalCompare(a, b) {
    return String(a).localeCompare(String(b), "en", {numeric: true});
  }

  function timeline() {
    var out = body("timeline");
    var legend = el("div", {"class": "legend"}, labels.map(function (label) {
      return el("span", {}, [el("i", {"class": "swatch", style: {background: COLOUR[label]}}), document.createTextNode(label)]);
    }).concat([
      el("span", {}, [el("i", {"class": "swatch failed"}), document.createTextNode("failed attempt")]),
      el("span", {}, [el("i", {"class": "swatch retry"}), document.createTextNode("retry (attempt > 1)")])
    ]));
    out.appendChild(legend);
    if (facts.tasks.sampled) {
      out.appendChild(el("p", {"class": "note", id: "sampled",
        text: "showing " + count(rows.length) + " of " + count(facts.tasks.total) + " tasks (sampled: every " +
              "failed task and each stage's slowest are kept)"}));
    }
    var box = el("div", {id: "timeline"});
    var canvas = el("canvas", {"aria-label": "task timeline"});
    var tip = el("div", {id: "tip"});
    box.appendChild(canvas);
    out.appendChild(box);
    document.body.appendChild(tip);
    if (!rows.length) { box.appendChild(none("No task ran.")); }

    // lanes: one per (worker, lane) pair, workers in natural order, the "failed" lane last
    var laneIndex = {}, lanes = [];
    rows.forEach(function (r) {
      var key = r[task.worker] + "\u0000" + r[task.lane];
      if (!(key in laneIndex)) { laneIndex[key] = -1; lanes.push({worker: r[task.worker], lane: r[task.lane], bars: []}); }
    });
    lanes.sort(function (a, b) {
      var fa = a.worker === "failed", fb = b.worker === "failed";
      if (fa !== fb) return fa ? 1 : -1;
      return naturalCompare(a.worker, b.worker) || a.lane - b.lane;
    });
    var perWorker = {};  // lanes are thread ids: shown as 0, 1, ... within their worker, and only when it has several
    lanes.forEach(function (lane, i) {
      laneIndex[lane.worker + "\u0000" + lane.lane] = i;
      lane.ordinal = perWorker[lane.worker] = lane.worker in perWorker ? perWorker[lane.worker] + 1 : 0;
    });
    var t0 = 0, t1 = facts.seconds || 0;
    rows.forEach(function (r) {
      lanes[laneIndex[r[task.worker] + "\u0000" + r[task.lane]]].bars.push(r);
      t0 = Math.min(t0, r[task.start]);
      t1 = Math.max(t1, r[task.end]);
    });
    if (t1 <= t0) t1 = t0 + 1;
    lanes.forEach(function (lane) { lane.bars.sort(function (a, b) { return a[task.start] - b[task.start]; }); });

    var AXIS = 22, ROW = lanes.length > 48 ? Math.max(8, Math.floor(900 / lanes.length)) : 18, GAP = ROW > 10 ? 3 : 1;
    var gutter = 0, geometry = null;

    function laneName(lane) {
      if (lane.worker === "failed") return "failed";
      return perWorker[lane.worker] > 0 ? lane.worker + " · " + lane.ordinal : lane.worker;
    }

    function hatch(ctx) {
      var tile = document.createElement("canvas");
      tile.width = tile.height = 6;
      var t = tile.getContext("2d");
      t.fillStyle = "#fde0dc"; t.fillRect(0, 0, 6, 6);
      t.strokeStyle = BAD; t.lineWidth = 1.5;
      t.beginPath(); t.moveTo(0, 6); t.lineTo(6, 0); t.moveTo(-1, 1); t.lineTo(1, -1); t.moveTo(5, 7); t.lineTo(7, 5); t.stroke();
      return ctx.createPattern(tile, "repeat");
    }

    function draw() {
      var ratio = window.devicePixelRatio || 1;
      var width = Math.max(320, box.clientWidth);
      var height = AXIS + lanes.length * ROW + 6;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.height = height + "px";
      var ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.font = "11px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      gutter = 0;
      lanes.forEach(function (lane) { gutter = Math.max(gutter, ctx.measureText(laneName(lane)).width); });
      gutter = Math.min(Math.ceil(gutter) + 12, Math.round(width * 0.3));
      var plot = width - gutter - 10;
      var scale = plot / (t1 - t0);
      geometry = {scale: scale, width: width};
      function x(t) { return gutter + (t - t0) * scale; }

      // axis: about one tick per 90 px, at 1, 2 or 5 × a power of ten
      var raw = (t1 - t0) / Math.max(1, plot / 90), power = Math.pow(10, Math.floor(Math.log10(raw)));
      var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= raw; })[0];
      ctx.fillStyle = "#5b6773"; ctx.strokeStyle = "#eceff2"; ctx.textAlign = "center";
      for (var t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
        var px = Math.round(x(t)) + 0.5;
        ctx.beginPath(); ctx.moveTo(px, AXIS - 4); ctx.lineTo(px, height); ctx.stroke();
        ctx.fillText(tick(t, step), Math.min(Math.max(px, gutter + 14), width - 24), AXIS / 2);
      }
      var pattern = hatch(ctx), drawn = 0, failed = 0;
      lanes.forEach(function (lane, i) {
        var top = AXIS + i * ROW;
        if (i % 2) { ctx.fillStyle = "rgba(0,0,0,0.025)"; ctx.fillRect(gutter, top, plot, ROW); }
        ctx.fillStyle = lane.worker === "failed" ? BAD : "#1d2733"; ctx.textAlign = "right";
        var name = laneName(lane);
        while (name.length > 4 && ctx.measureText(name).width > gutter - 8) name = "…" + name.slice(2);
        if (ROW >= 10) ctx.fillText(name, gutter - 6, top + ROW / 2);
        lane.bars.forEach(function (r) {
          var left = x(r[task.start]), w = Math.max(1, (r[task.end] - r[task.start]) * scale);
          var y = top + GAP / 2, h = ROW - GAP;
          if (r[task.failed]) {
            ctx.fillStyle = pattern; ctx.fillRect(left, y, w, h);
            ctx.strokeStyle = BAD; ctx.lineWidth = 1.5; ctx.strokeRect(left + 0.75, y + 0.75, Math.max(0.5, w - 1.5), h - 1.5);
          } else {
            ctx.fillStyle = COLOUR[r[task.label]] || "#999"; ctx.fillRect(left, y, w, h);
          }
          if (r[task.attempt] > 1) { ctx.fillStyle = "#222"; ctx.fillRect(left, y, w, Math.max(2, h / 4)); }
          drawn++;
          if (r[task.failed]) failed++;
        });
      });
      // what was drawn, and where lanes sit (CSS pixels), for tests and anyone reading the page's DOM
      [["lanes", lanes.length], ["bars", drawn], ["failed", failed], ["axis", AXIS], ["row", ROW], ["gutter", gutter]]
        .forEach(function (kv) { box.setAttribute("data-" + kv[0], String(kv[1])); });
    }

    function barAt(px, py) {
      if (!geometry) return null;
      var i = Math.floor((py - AXIS) / ROW);
      if (i < 0 || i >= lanes.length || px < gutter) return null;
      var t = t0 + (px - gutter) / geometry.scale, slack = 2 / geometry.scale, best = null, bestGap = Infinity;
      lanes[i].bars.forEach(function (r) {  // a lane holds at most the page's bars: a plain scan is quick enough
        var gap = t < r[task.start] ? r[task.start] - t : t > r[task.end] ? t - r[task.end] : 0;
        if (gap <= slack && gap < bestGap) { best = r; bestGap = gap; }
      });
      return best;
    }

    function describe(r) {
      var lines = ["key: " + r[task.key], "stage: " + r[task.label],
                   "chunk: " + (r[task.chunk] === null ? "–" : r[task.chunk]),
                   "input: " + (r[task.input] || "–"),
                   "seconds: " + secs(r[task.end] - r[task.start]) + "  (from " + secs(r[task.start]) + ")",
                   "worker: " + (r[task.worker] === "failed" ? "– (failed before a worker reported)" :
                                 laneName(lanes[laneIndex[r[task.worker] + "\u0000" + r[task.lane]]])),
                   "attempt: " + r[task.attempt]];
      if (r[task.failed]) lines.push("failed: " + String(r[task.failed]).slice(0, 400));
      return lines.join("\n");
    }

    canvas.addEventListener("mousemove", function (event) {
      var rect = canvas.getBoundingClientRect();
      var r = barAt(event.clientX - rect.left, event.clientY - rect.top);
      if (!r) { tip.style.display = "none"; canvas.style.cursor = ""; return; }
      tip.textContent = describe(r);
      tip.style.display = "block";
      canvas.style.cursor = "pointer";
      var left = event.clientX + 14, top = event.clientY + 14;
      if (left + tip.offsetWidth > window.innerWidth - 8) left = event.clientX - tip.offsetWidth - 14;
      if (top + tip.offsetHeight > window.innerHeight - 8) top = event.clientY - tip.offsetHeight - 14;
      tip.style.left = Math.max(4, left) + "px";
      tip.style.top = Math.max(4, top) + "px";
    });
    canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(draw, 120);
    });
    draw();
  }

  // ---- time per stage, workers, skew ----------------------------------------------------------------------

  function stages() {
    var list = facts.stages || [];
    if (!list.length) { body("stages").appendChild(none("No stage ran.")); return; }
    var totals = list.map(function (s) { return PARTS.reduce(function (a, p) { return a + (s.seconds[p] || 0); }, 0); });
    var most = Math.max.apply(null, totals.concat([1e-9]));
    body("stages").appendChild(el("div", {"class": "legend"}, PARTS.map(function (p) {
      return el("span", {}, [el("i", {"class": "swatch", style: {background: PART_COLOUR[p]}}), document.createTextNode(p)]);
    })));
    var heads = ["stage", "tasks", "failed", "split"].concat(PARTS).concat(["total"]);
    var numeric = [false, true, true, "bar"].concat(PARTS.map(function () { return true; })).concat([true]);
    body("stages").appendChild(table(heads, list.map(function (s, i) {
      var bar = el("div", {"class": "stack", style: {width: (100 * totals[i] / most).toFixed(2) + "%"}},
        PARTS.filter(function (p) { return s.seconds[p] > 0; }).map(function (p) {
          return el("span", {title: p + ": " + secs(s.seconds[p]),
                             style: {width: (100 * s.seconds[p] / (totals[i] || 1)).toFixed(3) + "%", background: PART_COLOUR[p]}});
        }));
      return [s.label, count(s.tasks), count(s.failed), bar]
        .concat(PARTS.map(function (p) { return secs(s.seconds[p]); })).concat([secs(totals[i])]);
    }), numeric));
  }

  function workers() {
    var list = facts.workers || [];
    if (!list.length) { body("workers").appendChild(none("No worker reported.")); return; }
    body("workers").appendChild(table(["worker", "lanes", "busy", "idle %", "peak RSS"], list.map(function (w) {
      return [w.id, count(w.lanes), secs(w.busy), w.idle_pct.toFixed(1) + " %", bytes(w.peak_rss)];
    }), [false, true, true, true, true]));
  }

  function skew() {
    var list = facts.stages || [];
    if (!list.length) { body("skew").appendChild(none("No stage ran.")); return; }
    body("skew").appendChild(table(
      ["stage", "tasks", "slowest", "median", "fastest", "slowest ÷ median", "slowest chunk", "slowest input"],
      list.map(function (s) {
        var ratio = s.median > 0 ? (s.slowest.seconds / s.median).toFixed(1) + "×" : "–";
        return [s.label, count(s.tasks), secs(s.slowest.seconds), secs(s.median), secs(s.fastest.seconds), ratio,
                s.slowest.chunk === null ? "–" : String(s.slowest.chunk), s.slowest.input || "–"];
      }), [false, true, true, true, true, true, true, "path"]));
  }

  function advice() {
    var list = facts.advice || [];
    if (!list.length) { body("advice").appendChild(none("Nothing stood out: no advice for this run.")); return; }
    body("advice").appendChild(el("ul", {"class": "advice"}, list.map(function (a) {
      return el("li", {}, [document.createTextNode(a.text), a.figure ? el("span", {"class": "figure", text: a.figure}) : null]);
    })));
  }

  // ---- I/O, memory, outputs -------------------------------------------------------------------------------

  function io() {
    var io = facts.io || {};
    var out = body("io");
    out.appendChild(el("dl", {"class": "facts"}, [["rows read", count(io.rows_read)], ["bytes read (in memory)", bytes(io.bytes_read || 0)],
      ["rows written", count(io.rows_written)],
      ["bytes written", bytes(io.bytes_written)], ["bytes spilled", bytes(io.bytes_spilled)]].map(function (kv) {
      return el("div", {}, [el("dt", {text: kv[0]}), el("dd", {text: kv[1]})]);
    })));
    var list = facts.workers || [];
    if (!list.length) return;
    var most = Math.max.apply(null, list.map(function (w) { return w.peak_rss || 0; }).concat([1]));
    out.appendChild(el("h3", {text: "Peak memory per worker", style: {fontSize: "14px", margin: "12px 0 4px"}}));
    out.appendChild(table(["worker", "peak RSS", ""], list.map(function (w) {
      return [w.id, bytes(w.peak_rss), el("div", {"class": "meter", style: {width: (100 * (w.peak_rss || 0) / most).toFixed(2) + "%"}})];
    }), [false, true, "bar"]));
  }

  function outputs() {
    var list = facts.outputs || [];
    var out = body("outputs");
    if (!list.length) { out.appendChild(none(facts.error ? "Nothing was committed: the run failed." : "No output in this report.")); return; }
    out.appendChild(table(["path", "run", "rows", "files", "seconds", "skipped"], list.map(function (m) {
      return [m.path, m.run_id || "–", count(m.rows), count((m.files || []).length), secs(m.seconds),
              count((m.skipped || []).length)];
    }), ["path", false, true, true, true, true]));
    list.forEach(function (m) {
      if (!(m.stages || []).length) return;
      out.appendChild(el("details", {}, [el("summary", {text: "stages of " + m.path}),
        table(["stage", "chunks", "rows in", "rows out", "task seconds"], m.stages.map(function (s) {
          return [s.stage, count(s.chunks), s.rows_in === null ? "lazy" : count(s.rows_in), count(s.rows_out), secs(s.seconds)];
        }), [false, true, true, true, true])]));
    });
  }

  [header, timeline, stages, workers, skew, advice, io, outputs].forEach(function (panel) { panel(); });
})();
