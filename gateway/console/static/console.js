// Portcullis admin console: live updates on top of pages that work
// without this script. It never writes markup from data: rows from the
// event stream are built with textContent, and refreshed regions are
// taken from the server's own html/template output.
"use strict";

(function () {
  // Regions marked data-live are refreshed every few seconds from the
  // same URL, unless the operator is working inside one or the tab is
  // hidden.
  var regions = document.querySelectorAll("[data-live]");
  if (regions.length > 0 && !document.getElementById("decisions")) {
    setInterval(function () {
      if (document.hidden) return;
      var active = document.activeElement;
      for (var i = 0; i < regions.length; i++) {
        if (regions[i].contains(active) && active !== document.body) return;
      }
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("status " + r.status);
          return r.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.querySelectorAll("[data-live]");
          if (fresh.length !== regions.length) return;
          for (var i = 0; i < regions.length; i++) {
            var node = document.importNode(fresh[i], true);
            regions[i].replaceWith(node);
            regions[i] = node;
          }
          regions = document.querySelectorAll("[data-live]");
        })
        .catch(function () { /* keep the page as it is; the next tick retries */ });
    }, 5000);
  }

  // The decisions page follows the decision stream.
  var table = document.getElementById("decisions");
  if (!table || !window.EventSource) return;
  var body = table.tBodies[0];
  var state = document.getElementById("stream-state");
  var seen = 0;
  var max = 200;

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== null) td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function code(td, text) {
    var c = document.createElement("code");
    c.textContent = text;
    td.appendChild(c);
  }
  function link(td, href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  }
  function badge(td, verdict) {
    var s = document.createElement("span");
    var cls = verdict === "allow" ? "ok" : (verdict === "deny" ? "bad" : "warn");
    s.className = "badge " + cls;
    s.textContent = verdict;
    td.appendChild(s);
  }
  function clock(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toISOString().slice(11, 23);
  }

  var es = new EventSource(table.getAttribute("data-stream"));
  es.addEventListener("open", function () {
    state.textContent = "Live: new decisions appear at the top.";
  });
  es.addEventListener("error", function () {
    state.textContent = "The live stream is interrupted; retrying.";
  });
  es.addEventListener("lagging", function () {
    state.textContent = "Live, but some decisions came too fast to show.";
  });
  es.addEventListener("decision", function (ev) {
    var d;
    try { d = JSON.parse(ev.data); } catch (e) { return; }
    var none = body.querySelector("tr.none");
    if (none) none.remove();
    var tr = document.createElement("tr");
    tr.className = "fresh";
    var t = cell(tr, null);
    var time = document.createElement("time");
    time.dateTime = d.time;
    time.textContent = clock(d.time);
    t.appendChild(time);
    badge(cell(tr, null), d.verdict);
    code(cell(tr, null), d.reason);
    cell(tr, d.resource);
    var u = cell(tr, null);
    if (d.user) link(u, "/console/user?u=" + encodeURIComponent(d.user), d.user);
    var dv = cell(tr, null);
    if (d.device) link(dv, "/console/device?ca=" + encodeURIComponent(d.device_ca) + "&id=" + encodeURIComponent(d.device), d.device);
    var rq = cell(tr, null, "wrap");
    code(rq, d.method + " " + d.host + d.path);
    rq.appendChild(document.createElement("br"));
    var id = document.createElement("span");
    id.className = "muted small";
    id.textContent = d.request_id;
    rq.appendChild(id);
    cell(tr, String(d.status), "num");
    var ex = cell(tr, null);
    if (d.explain && d.explain.indexOf("/console/explain?") === 0) link(ex, d.explain, "Explain");
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
    seen++;
    state.textContent = "Live: " + seen + " new decision" + (seen === 1 ? "" : "s") + " since the page loaded.";
  });
})();
