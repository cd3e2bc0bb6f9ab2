/*
 * boxcut console: keeps the "now" page current by polling /console/now.json and redrawing the hour chart as SVG.
 *
 * Copyright boxcut's authors. Licensed under the Apache License, Version 2.0 (the "License"); you may not use
 * this file except in compliance with the License. A copy is in boxcut's LICENSE file, and at
 * http://www.apache.org/licenses/LICENSE-2.0. Distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS
 * OF ANY KIND, either express or implied.
 *
 * No library: the page is served with a Content-Security-Policy that allows this file and nothing inline, so
 * everything here builds DOM nodes and sets their text (never HTML).
 */
(function () {
  "use strict";

  var EVERY_MS = 4000;
  var SVG = "http://www.w3.org/2000/svg";
  var CHART = { width: 720, height: 180, top: 16, bottom: 24 };

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) { return "never"; }
    if (seconds < 90) { return Math.round(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min ago"; }
    return (seconds / 3600).toFixed(1) + " h ago";
  }

  function updateTiles(tiles) {
    tiles.forEach(function (tile) {
      var node = document.querySelector('.tile[data-key="' + tile.key + '"]');
      if (!node) { return; }
      node.querySelector(".value").textContent = tile.value;
      node.querySelector(".detail").textContent = tile.detail;
      node.classList.toggle("alert", Boolean(tile.alert));
    });
  }

  function brakeState(s) {
    if (s.engaged) { return "ENGAGED"; }
    if (s.released_for_seconds) { return "released for " + s.released_for_seconds + " s"; }
    return "clear";
  }

  function updateBrake(brake) {
    var body = document.querySelector("#brake-table tbody");
    if (!body) { return; }
    var rows = [{ source: "all sources", users: brake.total.users, limit: brake.total.limit,
                  engaged: brake.total.engaged, released_for_seconds: brake.total.released_for_seconds,
                  held_jobs: brake.total.held_jobs, total: true }].concat(brake.sources);
    body.replaceChildren.apply(body, rows.map(function (s) {
      var tr = el("tr", null, s.total ? "total" : (s.engaged ? "alert" : ""));
      [s.source, s.users, s.limit, brakeState(s), s.held_jobs.length].forEach(function (v) {
        tr.appendChild(el("td", v));
      });
      return tr;
    }));
  }

  function updateWorkers(workers) {
    var list = document.getElementById("workers");
    if (!list) { return; }
    if (!workers.length) {
      list.replaceChildren(el("li", "No worker has a heartbeat: nothing is sent to Box.", "alert"));
      return;
    }
    list.replaceChildren.apply(list, workers.map(function (w) {
      var li = el("li");
      li.appendChild(el("span", w.worker, "worker-name"));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", w.box_api + " · seen " + ago(w.seen_seconds_ago), "meta"));
      return li;
    }));
  }

  function updateEndpoints(endpoints) {
    var body = document.querySelector("#endpoints tbody");
    if (!body) { return; }
    body.replaceChildren.apply(body, endpoints.map(function (e) {
      var tr = el("tr");
      [e.endpoint, e.in_flight, e.waiting].forEach(function (v) { tr.appendChild(el("td", v)); });
      return tr;
    }));
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function round(n) { return Math.round(n * 10) / 10; }

  function drawChart(minutes) {
    var chart = document.getElementById("hour-chart");
    if (!chart || !minutes.length) { return; }
    var step = CHART.width / minutes.length;
    var plot = CHART.height - CHART.top - CHART.bottom;
    var topAccepted = Math.max.apply(null, minutes.map(function (m) { return m.accepted; }).concat([1]));
    var topWaiting = Math.max.apply(null, minutes.map(function (m) { return m.waiting || 0; }).concat([1]));
    var bars = svg("g", { "class": "bars" });
    var dots = svg("g", { "class": "dots" });
    var points = [];
    minutes.forEach(function (m, i) {
      var height = plot * m.accepted / topAccepted;
      var rect = svg("rect", { x: round(i * step + 1), y: round(CHART.top + plot - height),
                               width: round(step - 2), height: round(height) });
      var title = document.createElementNS(SVG, "title");
      title.textContent = m.minute + ": " + m.accepted + " accepted" +
        (m.waiting === null ? "" : ", " + m.waiting + " waiting");
      rect.appendChild(title);
      bars.appendChild(rect);
      if (m.waiting !== null) {
        var x = round(i * step + step / 2);
        var y = round(CHART.top + plot - plot * m.waiting / topWaiting);
        points.push(x + "," + y);
        dots.appendChild(svg("circle", { "class": "waiting-dot", cx: x, cy: y, r: 3 }));
      }
    });
    var base = CHART.height - CHART.bottom;
    var left = svg("text", { "class": "tick", x: 2, y: CHART.height - 6 });
    left.textContent = "\u221260 min";
    var right = svg("text", { "class": "tick end", x: CHART.width - 2, y: CHART.height - 6 });
    right.textContent = "now";
    chart.replaceChildren(svg("line", { "class": "axis", x1: 0, x2: CHART.width, y1: base, y2: base }), bars,
                          svg("polyline", { "class": "waiting-line", points: points.join(" ") }), dots, left, right);
    var a = document.getElementById("chart-top-accepted");
    var w = document.getElementById("chart-top-waiting");
    if (a) { a.textContent = topAccepted; }
    if (w) { w.textContent = topWaiting; }
  }

  function poll(status) {
    var url = status.getAttribute("data-poll");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.assign(url.replace(/now\.json$/, "signin?next=" + encodeURIComponent(location.pathname)));
          return null;
        }
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (now) {
        if (!now) { return; }
        updateTiles(now.tiles);
        updateBrake(now.brake);
        updateWorkers(now.workers);
        updateEndpoints(now.endpoints);
        drawChart(now.chart);
        document.getElementById("now-at").textContent = now.at;
        status.textContent = "live";
        status.className = "status-ok";
      })
      .catch(function () {
        status.textContent = "connection lost: retrying";
        status.className = "status-lost";
      })
      .then(function () { window.setTimeout(function () { poll(status); }, EVERY_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var status = document.getElementById("now-status");
    if (status && status.getAttribute("data-poll")) {
      window.setTimeout(function () { poll(status); }, EVERY_MS);
    }
  });
}());
