// Search, sorting, keyboard navigation and clickable feature-map sheets. Everything a page
// needs comes from its own HTML and from search.js (a plain script, since browsers refuse
// fetch() from file:// pages); nothing is requested from anywhere else.
(function () {
  "use strict";
  var root = document.body.dataset.root || "";

  function typing(event) {
    var tag = (event.target && event.target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  // Arrow keys (or j/k/u) follow the links marked with data-key; "/" focuses the search.
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event)) return;
    if (event.key === "/") {
      var box = document.getElementById("search");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    var keys = { ArrowLeft: "ArrowLeft", ArrowRight: "ArrowRight", ArrowUp: "ArrowUp", j: "ArrowRight", k: "ArrowLeft", u: "ArrowUp" };
    var link = keys[event.key] && document.querySelector('a[data-key="' + keys[event.key] + '"]');
    if (link) window.location.href = link.href;
  });

  // --- a build still running says how far it has come ---------------------------------
  // Each model being built has its own MODEL/status.js, rewritten as the build goes. The
  // page loads it again every few seconds through a new script tag (browsers refuse fetch()
  // from file:// pages), says when the status was written, and reloads itself once the
  // build has finished and the file is gone, to show the finished page.
  var REFRESH = 5000;
  function clockTime(seconds) {
    var d = new Date(seconds * 1000);
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2);
  }
  function showStatus(el) {
    var status = (window.GALLERY_STATUS || {})[el.dataset.status.replace(/\/status\.js$/, "")];
    if (!status) return false;
    var text = status.text + (status.written ? " (as of " + clockTime(status.written) + ")" : "");
    el.textContent = (el.dataset.name ? el.dataset.name + ": " : "") + text;  // textContent: never parsed as HTML
    return !status.stopped;
  }
  function watch(el) {
    if (!showStatus(el)) return;
    setTimeout(function again() {
      var script = document.createElement("script");
      script.src = root + el.dataset.status + "?" + Date.now();
      script.onload = function () { script.remove(); if (showStatus(el)) setTimeout(again, REFRESH); };
      script.onerror = function () { script.remove(); window.location.reload(); };  // finished: its status is gone
      document.body.appendChild(script);
    }, REFRESH);
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-status]"), watch);

  // --- search -------------------------------------------------------------------------
  var data = window.GALLERY_SEARCH || { entries: [], layers: [] };
  var input = document.getElementById("search");
  var list = document.getElementById("search-results");
  var selected = -1;

  function norm(text) { return String(text).toLowerCase(); }

  // "block3_conv1 12", "block3_conv1/12" or "block3_conv1#12" jump to a filter.
  function filterJumps(query) {
    var m = /^\s*(.+?)\s*[\s\/#:]\s*(\d+)\s*$/.exec(query);
    if (!m) return [];
    var name = norm(m[1]), index = +m[2], found = [];
    data.layers.forEach(function (layer) {
      if (norm(layer.n).indexOf(name) === -1) return;
      if (layer.f.indexOf(index) !== -1) {
        found.push({ k: "filter", l: layer.n + " #" + index, u: layer.u + index + ".html", d: layer.m });
      } else if (norm(layer.n) === name) {
        // The layer is there but not this filter: say why, and how to get it (no link to follow).
        found.push({ k: "note", l: layer.n + " #" + index, d: index < layer.c
          ? "exists, but this build did not render it (it rendered " + layer.f.length + " of the layer's " + layer.c +
            " filters); add it with --filters " + index + " (or a range that holds it)"
          : "no such filter: " + layer.n + " has " + layer.c + " (0\u2013" + (layer.c - 1) + ")" });
      }
    });
    return found;
  }

  function matches(query) {
    var q = norm(query.trim());
    if (!q) return [];
    var scored = [];
    data.entries.forEach(function (entry) {
      var at = norm(entry.l).indexOf(q);
      // Places (models, layers, photos) before classes; classes by their probability.
      if (at !== -1) scored.push([at === 0 ? 0 : 1, entry.k === "class" ? 1 - (entry.p || 0) : 0, entry.l.length, entry]);
    });
    scored.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]; });
    var seen = {};
    return filterJumps(query).concat(scored.map(function (s) { return s[3]; })).filter(function (e) {
      var key = e.k + "|" + e.l + "|" + e.u;
      if (seen[key]) return false;
      seen[key] = true;
      return true;
    }).slice(0, 30);
  }

  function show(results, query) {
    list.textContent = "";
    selected = results.length ? 0 : -1;
    if (!results.length && query.trim()) {
      var none = document.createElement("li");
      none.className = "none";
      none.setAttribute("role", "option");
      none.setAttribute("aria-disabled", "true");
      none.textContent = "Nothing matches \u201c" + query.trim() + "\u201d: try a layer, a filter (block3_conv1 12), a class or a photo.";
      list.appendChild(none);
      list.hidden = false;
      return;
    }
    results.forEach(function (entry, i) {
      var li = document.createElement("li");
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === 0 ? "true" : "false");
      if (!entry.u) {  // a note, not a place: nothing to open
        li.className = "none";
        li.setAttribute("aria-disabled", "true");
        li.textContent = entry.l + ": " + entry.d;
        list.appendChild(li);
        return;
      }
      var a = document.createElement("a");
      a.href = root + entry.u;
      var label = document.createElement("span");
      label.textContent = entry.l;  // textContent: names are never parsed as HTML
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = entry.k + (entry.d ? " · " + entry.d : "");
      a.appendChild(label);
      a.appendChild(kind);
      li.appendChild(a);
      list.appendChild(li);
    });
    list.hidden = results.length === 0;
  }

  function move(step) {
    var items = list.querySelectorAll("li");
    if (!items.length) return;
    if (selected >= 0) items[selected].setAttribute("aria-selected", "false");
    selected = (selected + step + items.length) % items.length;
    items[selected].setAttribute("aria-selected", "true");
    items[selected].scrollIntoView({ block: "nearest" });
  }

  if (input && list) {
    input.addEventListener("input", function () { show(matches(input.value), input.value); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") { event.preventDefault(); move(1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); move(-1); }
      else if (event.key === "Escape") { list.hidden = true; input.blur(); }
      else if (event.key === "Enter") {
        var item = selected >= 0 && list.querySelectorAll("li")[selected];
        var link = item && item.querySelector("a");  // a note has none
        if (link) window.location.href = link.href;
      }
    });
    document.addEventListener("click", function (event) {
      if (!event.target.closest || !event.target.closest(".search")) list.hidden = true;
    });
  }

  // --- sorting a layer's filters --------------------------------------------------------
  var tiles = document.getElementById("tiles");
  Array.prototype.forEach.call(document.querySelectorAll("[data-sort]"), function (button) {
    button.addEventListener("click", function () {
      var key = button.dataset.sort;
      var items = Array.prototype.slice.call(tiles.children);
      items.sort(function (a, b) {
        var x = +a.dataset.peak, y = +b.dataset.peak;  // pending filters: -Infinity, last
        return key === "peak" && x !== y ? (y > x ? 1 : -1) : a.dataset.index - b.dataset.index;
      });
      items.forEach(function (item) { tiles.appendChild(item); });
      document.querySelectorAll("[data-sort]").forEach(function (other) {
        other.setAttribute("aria-pressed", other === button ? "true" : "false");
      });
    });
  });

  // --- a contact sheet is one image; a click opens the channel under the pointer ----------
  Array.prototype.forEach.call(document.querySelectorAll("img.sheet-img"), function (img) {
    var cols = +img.dataset.cols, rows = +img.dataset.rows, channels = +img.dataset.channels;
    var linked = {};
    (img.dataset.filters || "").split(",").forEach(function (v) { if (v !== "") linked[v] = true; });
    function channelAt(event) {
      var box = img.getBoundingClientRect();
      var col = Math.floor((event.clientX - box.left) / box.width * cols);
      var row = Math.floor((event.clientY - box.top) / box.height * rows);
      var index = row * cols + col;
      return index >= 0 && index < channels ? index : -1;
    }
    img.addEventListener("mousemove", function (event) {
      var i = channelAt(event);
      img.title = i < 0 ? "" : "channel " + i + (linked[i] ? " (click to open)" : "");
      img.style.cursor = linked[i] ? "pointer" : "default";
    });
    img.addEventListener("click", function (event) {
      var i = channelAt(event);
      if (linked[i]) window.location.href = img.dataset.base + i + ".html";
    });
  });
})();
