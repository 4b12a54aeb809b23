// drscreen review form: never lose typed work, and grade from the keyboard (issue 16).
// - Autosave: 2 s after the last change, and when the page is hidden or left, the form's
//   fields go to POST /review/exams/{id}/draft (the open draft is updated in place).
// - Session: the page knows the idle timeout (data-session-idle) and warns before it
//   ends, with "Stay signed in" (POST /review/session/extend).
// - Counters for the text fields: the limit shows before it bites; nothing is cut.
// - Keys (listed under the form): r/l + 0-4/u grade, r/l + y/n oedema, o outcome,
//   s save, Ctrl+Enter or S sign off and open the next case.
// - Worklist: ?focus=<exam id> puts the keyboard focus on that exam's row.
// Everything here is an enhancement: without it the form posts as a plain HTML form.
(function () {
  "use strict";
  var form = document.getElementById("review-form");

  // ---- worklist focus (after "Sign off and open next case") ----
  function focusWorklistRow() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-href]"));
    var id = new URLSearchParams(window.location.search).get("focus");
    if (!rows.length || !id) return;
    var row = rows.filter(function (r) { return r.getAttribute("data-href") === "/review/exams/" + id; })[0] || rows[0];
    rows.forEach(function (r) { r.classList.remove("current"); });
    row.classList.add("current");
    row.focus();
  }

  // ---- text counters ----
  function chars(text) { return Array.from(text.replace(/\r\n/g, "\n").trim()).length; }
  function updateCounter(area) {
    var counter = document.getElementById(area.id + "-counter");
    if (!counter) return;
    var limit = parseInt(area.getAttribute("data-limit"), 10);
    var n = chars(area.value);
    var text = n + " / " + limit + " characters";
    if (n > limit) text += ": " + (n - limit) + " too many, shorten it before saving";
    if (counter.textContent !== text) counter.textContent = text;
    counter.classList.toggle("near", n > limit * 0.9 && n <= limit);
    counter.classList.toggle("over", n > limit);
  }

  if (!form) {
    document.addEventListener("DOMContentLoaded", focusWorklistRow);
    if (document.readyState !== "loading") focusWorklistRow();
    return;
  }

  var status = document.getElementById("autosave-status");
  var csrf = form.querySelector("input[name='csrf']");
  var baseVersion = form.querySelector("input[name='base_version']");
  var autosaveUrl = form.getAttribute("data-autosave");
  var idleSecs = parseInt(form.getAttribute("data-session-idle"), 10) || 0;
  var lastContact = Date.now();
  var expired = false;
  function say(text) { if (status) status.textContent = text; }

  // A page rendered by the sign-in that restored an expired session's entries is shown
  // at the sign-in's URL; put the case's own URL back so a reload shows the case.
  var caseUrl = form.getAttribute("data-case-url");
  if (caseUrl && window.location.pathname !== caseUrl && window.history.replaceState) {
    window.history.replaceState(null, "", caseUrl);
  }
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();
  Array.prototype.forEach.call(form.querySelectorAll("textarea[data-limit]"), updateCounter);

  // ---- autosave ----
  var timer = null, dirty = false, saving = false, again = false, submitting = false;
  function body() { return new URLSearchParams(new FormData(form)); }
  function save(leaving) {
    if (!autosaveUrl || submitting || !dirty) return;
    if (saving) { again = true; return; }
    if (timer) { clearTimeout(timer); timer = null; }
    dirty = false;
    saving = true;
    say("Saving draft\u2026");
    fetch(autosaveUrl, {
      method: "POST",
      body: body(),
      headers: { "x-csrf-token": csrf ? csrf.value : "" },
      credentials: "same-origin",
      keepalive: !!leaving,
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) { return { status: r.status, json: j }; });
    }).then(function (res) {
      if (res.status === 200) {
        lastContact = Date.now();
        if (baseVersion && res.json.version) baseVersion.value = String(res.json.version);
        say("Draft saved " + (res.json.saved_at_hhmm || "") + " UTC");
        form.setAttribute("data-saved-version", String(res.json.version));
      } else if (res.status === 401) {
        markExpired();
        dirty = true;
      } else {
        var fields = (res.json.fields || []).map(function (f) { return f.message; }).join(" ");
        say("Draft not saved: " + (fields || res.json.error || ("error " + res.status)));
        dirty = true;
      }
    }).catch(function () {
      say("Draft not saved: drscreen could not be reached. Your entries are still in this page.");
      dirty = true;
    }).then(function () {
      saving = false;
      if (again) { again = false; schedule(); }
    });
  }
  function schedule() {
    dirty = true;
    if (!autosaveUrl || submitting) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(function () { save(false); }, 2000);
  }
  form.addEventListener("input", function (e) {
    if (e.target && e.target.tagName === "TEXTAREA") updateCounter(e.target);
    schedule();
  });
  form.addEventListener("change", schedule);
  form.addEventListener("submit", function () {
    submitting = true;
    if (timer) { clearTimeout(timer); timer = null; }
  });
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") save(true); });
  window.addEventListener("pagehide", function () { save(true); });

  // ---- session expiry warning ----
  var banner = null;
  function sessionBanner() {
    if (banner) return banner;
    banner = document.createElement("div");
    banner.id = "session-banner";
    banner.className = "session-banner";
    banner.setAttribute("role", "alert");
    var text = document.createElement("span");
    text.id = "session-banner-text";
    var button = document.createElement("button");
    button.type = "button";
    button.id = "stay-signed-in";
    button.textContent = "Stay signed in";
    button.addEventListener("click", extend);
    banner.appendChild(text);
    banner.appendChild(button);
    var main = document.querySelector("main") || document.body;
    main.insertBefore(banner, main.firstChild);
    return banner;
  }
  function markExpired() {
    expired = true;
    var b = sessionBanner();
    b.classList.add("expired");
    document.getElementById("session-banner-text").textContent =
      "Your session has expired. Your entries are still in this page: submitting asks you to sign in again and keeps them.";
    document.getElementById("stay-signed-in").hidden = true;
    say("Not saved: the session has expired.");
  }
  function extend() {
    fetch("/review/session/extend", {
      method: "POST",
      headers: { "x-csrf-token": csrf ? csrf.value : "" },
      credentials: "same-origin",
    }).then(function (r) {
      if (r.status === 200) {
        lastContact = Date.now();
        if (banner) banner.hidden = true;
        say("Session extended.");
      } else if (r.status === 401) {
        markExpired();
      }
    }).catch(function () {});
  }
  if (idleSecs > 0) {
    // Warn a third of the timeout ahead, at most two minutes. The server counts idle time
    // from its last request; the page's own clock starts no earlier, so it errs early.
    var warnBefore = Math.min(120, Math.max(1, Math.floor(idleSecs / 3)));
    setInterval(function () {
      if (expired) return;
      var left = idleSecs - (Date.now() - lastContact) / 1000;
      if (left < -1.5) { markExpired(); return; }
      if (left <= warnBefore) {
        var b = sessionBanner();
        b.hidden = false;
        var secs = Math.max(0, Math.ceil(left));
        var when = secs >= 90 ? Math.round(secs / 60) + " minutes" : secs + " seconds";
        document.getElementById("session-banner-text").textContent =
          "Your session ends in " + when + " without activity. ";
      } else if (banner && !expired) {
        banner.hidden = true;
      }
    }, 1000);
  }

  // ---- keyboard grading ----
  var armed = null;
  var keyState = document.createElement("span");
  keyState.id = "key-state";
  keyState.className = "key-state";
  keyState.setAttribute("aria-live", "polite");
  var actions = form.querySelector(".actions");
  if (actions) actions.appendChild(keyState);
  function arm(eye) {
    armed = eye;
    keyState.textContent = eye ? (eye === "right" ? "Right" : "Left") + " eye: 0\u20134, u, y or n" : "";
  }
  function setSelect(id, value) {
    var select = document.getElementById(id);
    if (!select) return false;
    select.value = value;
    select.dispatchEvent(new Event("change", { bubbles: true }));
    select.classList.add("keyed");
    setTimeout(function () { select.classList.remove("keyed"); }, 600);
    return true;
  }
  function cycleOutcome() {
    var select = document.getElementById("outcome");
    if (!select) return;
    var options = Array.prototype.filter.call(select.options, function (o) { return o.value !== ""; });
    var implied = (document.getElementById("implied-outcome") || {}).textContent;
    var impliedOption = options.filter(function (o) { return o.textContent === implied; })[0];
    var next;
    if (select.value === "" && impliedOption) {
      next = impliedOption;
    } else {
      var i = options.map(function (o) { return o.value; }).indexOf(select.value);
      next = options[(i + 1) % options.length];
    }
    setSelect("outcome", next.value);
  }
  function signNext() {
    var button = document.getElementById("sign-next") || document.getElementById("sign-off");
    if (!button) return;
    if (form.requestSubmit) form.requestSubmit(button); else button.click();
  }
  function typing(t) {
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }
  document.addEventListener("keydown", function (e) {
    var closed = form.closest("details:not([open])");
    if (closed) return;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.altKey) {
      e.preventDefault();
      signNext();
      return;
    }
    if (typing(e.target)) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var k = e.key;
    if (armed) {
      var eye = armed;
      if (/^[0-4]$/.test(k) || k === "u") {
        setSelect(eye + "_grade", k === "u" ? "ungradable" : k);
        if (k === "u") setSelect(eye + "_dme", "");
        arm(eye);
        e.preventDefault();
        return;
      }
      if (k === "y" || k === "n") {
        setSelect(eye + "_dme", k === "y" ? "yes" : "no");
        arm(null);
        e.preventDefault();
        return;
      }
      // Any other key ends the eye's turn and keeps its own meaning.
      arm(null);
    }
    if (k === "r" && document.getElementById("right_grade")) { arm("right"); e.preventDefault(); return; }
    if (k === "l" && document.getElementById("left_grade")) { arm("left"); e.preventDefault(); return; }
    if (k === "o") { cycleOutcome(); e.preventDefault(); return; }
    if (k === "s") { dirty = true; save(false); e.preventDefault(); return; }
    if (k === "S") { e.preventDefault(); signNext(); }
  });
})();
