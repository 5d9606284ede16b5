/* Steward's small browser behaviours: sortable tables, confirmations and the user menu.
   No framework; htmx is loaded separately for partial updates. */
(function () {
  "use strict";

  // ---- Sortable tables: click a header of table.sortable to sort by that column.
  // A cell's data-sort attribute, when present, is the value sorted on (dates, ids, states).
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var value = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    return value.trim();
  }

  function compareValues(a, b) {
    var na = parseFloat(a), nb = parseFloat(b);
    var numeric = a !== "" && b !== "" && !isNaN(na) && !isNaN(nb) && isFinite(a) && isFinite(b);
    if (numeric) return na - nb;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortTable(table, th) {
    var index = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th[aria-sort]").forEach(function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (r1, r2) {
        var result = compareValues(cellValue(r1, index), cellValue(r2, index));
        return ascending ? result : -result;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  }

  document.addEventListener("click", function (event) {
    var th = event.target.closest("table.sortable thead th");
    if (!th || th.classList.contains("col-actions") || event.target.closest("a, button, input")) return;
    sortTable(th.closest("table"), th);
  });
  document.addEventListener("keydown", function (event) {
    var th = event.target.closest && event.target.closest("table.sortable thead th");
    if (th && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      sortTable(th.closest("table"), th);
    }
  });

  function prepareSortable(root) {
    root.querySelectorAll("table.sortable thead th:not(.col-actions)").forEach(function (th) {
      th.tabIndex = 0;
      th.title = th.title || "Sort by " + th.textContent.trim();
    });
  }

  // ---- Confirmations: form[data-confirm] and buttons with data-confirm ask before going on.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-confirm], a[data-confirm], input[type=submit][data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // ---- The user menu (a <details>): close on a click elsewhere or on Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.user-menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });

  function init() {
    prepareSortable(document);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
