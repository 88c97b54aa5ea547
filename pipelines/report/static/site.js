// neuron-atlas report: the jump-to-unit box, keyboard navigation and the top-k view toggle. Every page reads fine
// without it (the toggle stays hidden; each example's caption links its other views).
(function () {
  "use strict";

  // "0-63,100" -> [[0, 63], [100, 100]]
  function parseRanges(text) {
    return (text || "").split(",").filter(Boolean).map(function (part) {
      var ends = part.split("-").map(Number);
      return [ends[0], ends.length > 1 ? ends[1] : ends[0]];
    });
  }

  function inRanges(ranges, n) {
    return ranges.some(function (r) { return n >= r[0] && n <= r[1]; });
  }

  document.querySelectorAll("form.jump").forEach(function (form) {
    var ranges = parseRanges(form.dataset.units);
    var input = form.querySelector("input");
    var status = form.querySelector(".jump-status");
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      var n = /^[0-9]+$/.test(text) ? parseInt(text, 10) : NaN;
      if (isNaN(n) || !inRanges(ranges, n)) {
        status.textContent = "unit " + (text || "?") + " is not in this layer (units " + form.dataset.units + ")";
        return;
      }
      status.textContent = "";
      window.location.href = "unit-" + n + ".html";
    });
  });

  // the top-k view toggle: every element of the figures that carries data-crop shows data-<view> instead
  // (an image its src, a link its href), or its crop where that view was not drawn
  document.querySelectorAll("fieldset.views").forEach(function (box) {
    var figures = document.getElementById(box.dataset.for);
    if (!figures) return;
    box.hidden = false;
    box.addEventListener("change", function (event) {
      var view = event.target.value;
      figures.dataset.view = view;
      figures.querySelectorAll("[data-crop]").forEach(function (el) {
        var url = el.getAttribute("data-" + view) || el.getAttribute("data-crop");
        el.setAttribute(el.tagName === "IMG" ? "src" : "href", url);
      });
    });
  });

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  // arrow keys inside the grid: move focus by one tile, or by one row up and down
  function moveInGrid(tile, key) {
    var tiles = Array.prototype.slice.call(document.querySelectorAll("#grid .tile"));
    var i = tiles.indexOf(tile);
    if (i < 0) return false;
    var top = tiles[0].offsetTop, columns = 1;
    while (columns < tiles.length && tiles[columns].offsetTop === top) columns++;
    var step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns }[key];
    var next = tiles[i + step];
    if (!next) return false;
    next.focus();
    next.scrollIntoView({ block: "nearest" });
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    if (event.key === "/") {
      var box = document.querySelector("form.jump:not([hidden]) input");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    var active = document.activeElement;
    if (active && active.classList && active.classList.contains("tile") && moveInGrid(active, event.key)) {
      event.preventDefault();
      return;
    }
    var rel = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
    var link = rel && document.querySelector("a[rel=" + rel + "]");
    if (link) { event.preventDefault(); window.location.href = link.href; }
  });
})();
