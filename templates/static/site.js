// Keyboard navigation and clickable feature-map sheets. No network access of any kind:
// everything a page needs is in its own HTML.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var tag = (event.target && event.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var keys = { ArrowLeft: "ArrowLeft", ArrowRight: "ArrowRight", ArrowUp: "ArrowUp", j: "ArrowRight", k: "ArrowLeft", u: "ArrowUp" };
    var wanted = keys[event.key];
    if (!wanted) return;
    var link = document.querySelector('a[data-key="' + wanted + '"]');
    if (link) { window.location.href = link.href; }
  });

  // A contact sheet is one image; map a click on it to the channel under the pointer.
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
