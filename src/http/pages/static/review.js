// drscreen review pages: keyboard navigation only. Everything works without it.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
  }
  document.addEventListener("keydown", function (e) {
    if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-href]"));
    if (rows.length && (e.key === "j" || e.key === "k" || e.key === "Enter")) {
      var i = rows.indexOf(document.activeElement);
      if (e.key === "Enter") {
        if (i >= 0) window.location.href = rows[i].getAttribute("data-href");
        return;
      }
      var next = e.key === "j" ? Math.min(i + 1, rows.length - 1) : Math.max(i - 1, 0);
      rows.forEach(function (r) { r.classList.remove("current"); });
      rows[next].classList.add("current");
      rows[next].focus();
      e.preventDefault();
      return;
    }
    if (e.key === "h") {
      var toggle = document.getElementById("heatmap-toggle");
      if (toggle) { toggle.checked = !toggle.checked; e.preventDefault(); }
    }
  });
  document.addEventListener("click", function (e) {
    var row = e.target.closest && e.target.closest("tr[data-href]");
    if (row && !e.target.closest("a")) window.location.href = row.getAttribute("data-href");
  });
})();
