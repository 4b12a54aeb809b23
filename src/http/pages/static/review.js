// drscreen review pages: keyboard navigation, and the review form's "outcome implied by
// your grades" kept up to date as the selects change. Everything works without it: the
// server renders the implied outcome and checks it again on sign-off.
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
  // The exam outcome table (grading::rules::exam_outcome) applied to the form's readings;
  // the labels are the outcome select's own.
  function impliedOutcome(form) {
    var urgent = false, referral = false, ungradable = false, complete = true;
    Array.prototype.forEach.call(form.querySelectorAll("select[name$='_grade']"), function (g) {
      var dme = form.querySelector("select[name='" + g.name.replace(/_grade$/, "_dme") + "']");
      if (g.value === "") { complete = false; return; }
      if (g.value === "ungradable") { ungradable = true; return; }
      if (!dme || dme.value === "") { complete = false; return; }
      var grade = parseInt(g.value, 10);
      if (grade >= 3) urgent = true;
      if (grade === 2 || dme.value === "yes") referral = true;
    });
    if (!complete) return null;
    return urgent ? "urgent_referral" : referral ? "referral" : ungradable ? "ungradable" : "rescreen";
  }
  function showImplied() {
    var form = document.getElementById("review-form");
    var shown = document.getElementById("implied-outcome");
    if (!form || !shown) return;
    var outcome = impliedOutcome(form);
    var option = outcome && form.querySelector("#outcome option[value='" + outcome + "']");
    shown.textContent = option ? option.textContent : "\u2014 grade every eye \u2014";
  }
  document.addEventListener("change", function (e) {
    if (e.target && e.target.closest && e.target.closest("#review-form")) showImplied();
  });
  document.addEventListener("click", function (e) {
    var row = e.target.closest && e.target.closest("tr[data-href]");
    if (row && !e.target.closest("a")) window.location.href = row.getAttribute("data-href");
  });
})();
