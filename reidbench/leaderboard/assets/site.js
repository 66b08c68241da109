// reidbench board site: sorting by any column and filtering by dataset, budget and threat.
// Inlined into the page; no network, no framework.
(function () {
  "use strict";
  var table = document.getElementById("board");
  if (!table) { return; }
  var tbody = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);

  function value(row, index) {
    var cell = row.cells[index];
    var v = cell.getAttribute("data-value");
    if (v === null || v === "") { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }

  function sortBy(index, descending) {
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = value(a, index), y = value(b, index);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }   // empty cells last, whatever the direction
      if (y === null) { return -1; }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -c : c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    heads.forEach(function (h, i) {
      if (i === index) { h.setAttribute("aria-sort", descending ? "descending" : "ascending"); }
      else if (h.hasAttribute("aria-sort")) { h.removeAttribute("aria-sort"); }
    });
  }

  heads.forEach(function (h, i) {
    if (!h.classList.contains("sortable")) { return; }
    h.addEventListener("click", function () {
      // numbers start high-to-low (the most robust first), names A-Z
      var first = h.getAttribute("data-type") === "number" ? "descending" : "ascending";
      var now = h.getAttribute("aria-sort");
      var descending = now ? now === "ascending" : first === "descending";
      sortBy(i, descending);
    });
  });

  function selected(id) {
    var el = document.getElementById(id);
    return el ? el.value : "all";
  }

  function applyFilters() {
    var dataset = selected("filter-dataset"), budget = selected("filter-budget"), threat = selected("filter-threat");
    heads.forEach(function (h, i) {
      var eps = h.getAttribute("data-eps"), kind = h.getAttribute("data-threat");
      var show = true;
      if (eps !== null && budget !== "all" && eps !== budget) { show = false; }
      if (kind !== null && threat !== "all" && kind !== threat && kind !== "any") { show = false; }
      h.classList.toggle("hidden", !show);
      Array.prototype.forEach.call(tbody.rows, function (r) { r.cells[i].classList.toggle("hidden", !show); });
    });
    Array.prototype.forEach.call(tbody.rows, function (r) {
      var ds = r.getAttribute("data-dataset");
      r.classList.toggle("hidden", dataset !== "all" && ds !== dataset);
    });
    var shown = Array.prototype.filter.call(tbody.rows, function (r) { return !r.classList.contains("hidden"); });
    var count = document.getElementById("row-count");
    if (count) { count.textContent = String(shown.length); }
  }

  ["filter-dataset", "filter-budget", "filter-threat"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener("change", applyFilters); }
  });
  applyFilters();
})();
