// drscreen review image viewer (markup in src/http/pages/viewer.rs). Each .viewer box
// draws its photograph on a <canvas> so the green channel, brightness and contrast change
// real pixels; zoom (wheel, pinch, +/- buttons and keys) and pan (drag) are a CSS
// transform on the .stage, mirrored in data-zoom / data-pan-x / data-pan-y. The page
// loads a display-sized rendition first (srcset); the full-size original is fetched only
// once the user zooms past what the rendition can show sharply. Heatmap layers get their
// src only when the heatmap is first shown. Without this script the rendition shows at
// fit size and the rest of the page works.
(function () {
  "use strict";
  var boxes = Array.prototype.slice.call(document.querySelectorAll(".viewer"));
  if (!boxes.length) return;
  document.documentElement.classList.add("js-viewer");

  var MAX_ZOOM = 16, STEP = 1.25, SHARP = 1.05;
  var look = { green: false, brightness: 100, contrast: 100 };
  var viewers = boxes.map(makeViewer);
  var active = viewers[0];

  function makeViewer(el) {
    var stage = el.querySelector(".stage");
    var img = el.querySelector("img.photo");
    var canvas = document.createElement("canvas");
    canvas.className = "photo-canvas";
    // The canvas replaces the <img> on screen, so it takes over its accessible name.
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", img.getAttribute("alt") || "fundus photograph");
    stage.insertBefore(canvas, img.nextSibling);
    var v = {
      el: el, stage: stage, img: img, canvas: canvas, heat: el.querySelector("img.heat"),
      zoom: 1, panX: 0, panY: 0, fitW: 0, fitH: 0, baseX: 0, baseY: 0,
      source: null, original: false, loadingOriginal: false,
      fullWidth: parseInt(el.getAttribute("data-width"), 10) || 0,
    };
    function ready() {
      if (!img.naturalWidth) return;
      v.source = img;
      el.classList.add("drawn");
      fit(v);
      draw(v);
      sharpen(v);
    }
    if (img.complete) ready(); else img.addEventListener("load", ready);
    wire(v);
    return v;
  }

  // The stage's size when the whole photograph fits the box, centred.
  function fit(v) {
    var src = v.source || v.img;
    var aspect = src.naturalWidth && src.naturalHeight ? src.naturalWidth / src.naturalHeight : 1;
    var bw = v.el.clientWidth, bh = v.el.clientHeight;
    v.fitW = Math.min(bw, bh * aspect);
    v.fitH = v.fitW / aspect;
    v.baseX = (bw - v.fitW) / 2;
    v.baseY = (bh - v.fitH) / 2;
    v.stage.style.width = v.fitW + "px";
    v.stage.style.height = v.fitH + "px";
    apply(v);
  }

  function apply(v) {
    v.stage.style.transform = "translate(" + (v.baseX + v.panX) + "px," + (v.baseY + v.panY) + "px) scale(" + v.zoom + ")";
    v.el.setAttribute("data-zoom", String(Math.round(v.zoom * 1000) / 1000));
    v.el.setAttribute("data-pan-x", String(Math.round(v.panX)));
    v.el.setAttribute("data-pan-y", String(Math.round(v.panY)));
  }

  // Draws the current source with the brightness/contrast filter; the green channel
  // (red-free view) keeps only green, as a red-free filter photograph does.
  function draw(v) {
    var src = v.source;
    if (!src) return;
    var c = v.canvas;
    if (c.width !== src.naturalWidth || c.height !== src.naturalHeight) {
      c.width = src.naturalWidth;
      c.height = src.naturalHeight;
    }
    var ctx = c.getContext("2d", { willReadFrequently: look.green });
    ctx.filter = "brightness(" + look.brightness + "%) contrast(" + look.contrast + "%)";
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.drawImage(src, 0, 0);
    ctx.filter = "none";
    if (look.green) {
      var data = ctx.getImageData(0, 0, c.width, c.height);
      var p = data.data;
      for (var i = 0; i < p.length; i += 4) { p[i] = 0; p[i + 2] = 0; }
      ctx.putImageData(data, 0, 0);
    }
    v.el.setAttribute("data-green", look.green ? "on" : "off");
  }

  // Past what the rendition holds, swap in the full-size original (once).
  function sharpen(v) {
    if (!v.source || v.original || v.loadingOriginal) return;
    var shown = v.fitW * v.zoom * (window.devicePixelRatio || 1);
    var have = v.source.naturalWidth;
    if (have >= v.fullWidth || shown <= have * SHARP) return;
    v.loadingOriginal = true;
    v.el.setAttribute("data-source", "loading-original");
    var full = new Image();
    full.addEventListener("load", function () {
      v.source = full;
      v.original = true;
      v.el.setAttribute("data-source", "original");
      draw(v);
    });
    full.addEventListener("error", function () {
      v.loadingOriginal = false;
      v.el.setAttribute("data-source", "rendition");
    });
    full.src = v.el.getAttribute("data-original");
  }

  // Zooms by `factor` keeping the box point (x, y) still (the centre by default).
  function zoomBy(v, factor, x, y) {
    if (x === undefined) { x = v.el.clientWidth / 2; y = v.el.clientHeight / 2; }
    var z = Math.min(MAX_ZOOM, Math.max(1, v.zoom * factor));
    var lx = (x - v.baseX - v.panX) / v.zoom, ly = (y - v.baseY - v.panY) / v.zoom;
    v.zoom = z;
    if (z === 1) { v.panX = 0; v.panY = 0; } else { v.panX = x - v.baseX - z * lx; v.panY = y - v.baseY - z * ly; }
    apply(v);
    sharpen(v);
  }

  function reset(v) { v.zoom = 1; v.panX = 0; v.panY = 0; apply(v); }

  function wire(v) {
    var el = v.el, pointers = {}, pinch = null;
    function at(e) { var r = el.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; }
    el.addEventListener("pointerenter", function () { active = v; });
    el.addEventListener("focus", function () { active = v; });
    el.addEventListener("wheel", function (e) {
      e.preventDefault();
      active = v;
      var p = at(e);
      zoomBy(v, Math.exp(-e.deltaY * 0.0015), p.x, p.y);
    }, { passive: false });
    el.addEventListener("pointerdown", function (e) {
      if (e.target.closest("button")) return;
      active = v;
      // Capture keeps a drag going outside the box; a synthetic pointer cannot be captured.
      try { el.setPointerCapture(e.pointerId); } catch (err) { /* drag still works inside the box */ }
      pointers[e.pointerId] = at(e);
      el.classList.add("dragging");
    });
    el.addEventListener("pointermove", function (e) {
      var last = pointers[e.pointerId];
      if (!last) return;
      var p = at(e);
      var ids = Object.keys(pointers);
      if (ids.length === 2) {
        var other = pointers[ids[0] === String(e.pointerId) ? ids[1] : ids[0]];
        var d = Math.hypot(p.x - other.x, p.y - other.y);
        if (pinch) zoomBy(v, d / pinch, (p.x + other.x) / 2, (p.y + other.y) / 2);
        pinch = d;
      } else if (v.zoom > 1) {
        v.panX += p.x - last.x;
        v.panY += p.y - last.y;
        apply(v);
      }
      pointers[e.pointerId] = p;
    });
    function up(e) {
      delete pointers[e.pointerId];
      pinch = null;
      if (!Object.keys(pointers).length) el.classList.remove("dragging");
    }
    el.addEventListener("pointerup", up);
    el.addEventListener("pointercancel", up);
    el.addEventListener("dblclick", function () { reset(v); });
    el.addEventListener("click", function (e) {
      var b = e.target.closest("button[data-zoom-step]");
      if (!b) return;
      active = v;
      var step = b.getAttribute("data-zoom-step");
      if (step === "in") zoomBy(v, STEP); else if (step === "out") zoomBy(v, 1 / STEP); else reset(v);
    });
  }

  // Heatmap layers: no src until the heatmap is first shown.
  var heatToggle = document.getElementById("heatmap-toggle");
  function syncHeat() {
    if (!heatToggle || !heatToggle.checked) return;
    viewers.forEach(function (v) {
      if (v.heat && !v.heat.getAttribute("src")) v.heat.setAttribute("src", v.el.getAttribute("data-heat"));
    });
  }
  if (heatToggle) heatToggle.addEventListener("change", syncHeat);
  syncHeat();

  var opacity = document.getElementById("heat-opacity");
  var opacityShown = document.getElementById("heat-opacity-value");
  function setOpacity() {
    if (!opacity) return;
    document.documentElement.style.setProperty("--heat-opacity", String(opacity.value / 100));
    if (opacityShown) opacityShown.textContent = opacity.value + "%";
  }
  if (opacity) { opacity.addEventListener("input", setOpacity); setOpacity(); }

  var green = document.getElementById("green-toggle");
  var brightness = document.getElementById("brightness");
  var contrast = document.getElementById("contrast");
  function readLook() {
    look.green = !!(green && green.checked);
    look.brightness = brightness ? Number(brightness.value) : 100;
    look.contrast = contrast ? Number(contrast.value) : 100;
    viewers.forEach(draw);
  }
  [green, brightness, contrast].forEach(function (input) {
    if (input) input.addEventListener(input.type === "checkbox" ? "change" : "input", readLook);
  });
  function nudge(input, by) {
    if (!input) return;
    input.value = String(Number(input.value) + by);
    readLook();
  }
  var resetButton = document.getElementById("viewer-reset");
  if (resetButton) resetButton.addEventListener("click", function () {
    if (green) green.checked = false;
    if (brightness) brightness.value = "100";
    if (contrast) contrast.value = "100";
    readLook();
    viewers.forEach(reset);
  });

  // On a wide screen the viewers reach down to the bottom of the window, whatever the
  // header above them holds, so both eyes and the side panel's form share one screen.
  var wide = window.matchMedia("(min-width: 1101px)");
  function sizeBoxes() {
    var root = document.documentElement.style;
    if (!wide.matches) { root.removeProperty("--viewer-h"); return; }
    var top = boxes[0].getBoundingClientRect().top + window.scrollY;
    root.setProperty("--viewer-h", Math.max(320, Math.floor(window.innerHeight - top - 12)) + "px");
  }
  sizeBoxes();
  viewers.forEach(fit);
  window.addEventListener("resize", function () { sizeBoxes(); viewers.forEach(fit); });

  // Keys (listed in the "Keys" hint). `0` after `r`/`l` belongs to keyboard grading.
  var lastKey = "", lastAt = 0;
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && (t.tagName === "INPUT" && t.type !== "range" && t.type !== "checkbox" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var prev = lastKey, recent = Date.now() - lastAt < 2000;
    lastKey = e.key; lastAt = Date.now();
    var handled = true;
    switch (e.key) {
      case "h": setTimeout(syncHeat, 0); handled = false; break; // review.js flips the checkbox
      case "g": if (green) { green.checked = !green.checked; readLook(); } break;
      case "[": nudge(brightness, -10); break;
      case "]": nudge(brightness, 10); break;
      case "{": nudge(contrast, -10); break;
      case "}": nudge(contrast, 10); break;
      case "+": case "=": zoomBy(active, STEP); break;
      case "-": zoomBy(active, 1 / STEP); break;
      case "0":
        if (recent && /^[rlRL]$/.test(prev)) { handled = false; break; }
        reset(active);
        break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  });
})();
