// The case page as a grading workstation, in a real headless Chromium at 1440x900
// (driven by playwright-core): both eyes' images and the sign-off button on screen
// together; zoom into the right eye (wheel and keys) and read the transform back from
// the DOM, with the full-size original fetched only after zooming; pan by dragging and
// reset; the green channel (red-free) really changes the canvas pixels; brightness
// changes them too; heatmap layers are fetched only when first shown, at the opacity
// slider's value; the whole-window viewer is titled with the eye and exam.
// Screenshots go to $DRS_SHOTS. Run by tests/review_browser.rs.
import { expect, launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";

const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const examId = need("DRS_EXAM_ID");
const examRef = need("DRS_EXAM_REF");
const shots = need("DRS_SHOTS");
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const requests = [];
page.on("request", (r) => requests.push(new URL(r.url()).pathname + new URL(r.url()).search));
const requested = (pattern) => requests.filter((u) => pattern.test(u));
const shot = async (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// Failed loads are checked by URL (the browser's own /favicon.ico probe is expected to 404).
const failed = [];
page.on("response", (r) => { if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) failed.push(`${r.status()} ${r.url()}`); });

// Mean red and green of a grid of pixels in the central part of a viewer's canvas.
const sample = (selector) => page.evaluate((sel) => {
  const c = document.querySelector(`${sel} canvas.photo-canvas`);
  const ctx = c.getContext("2d");
  let r = 0, g = 0, maxR = 0, n = 0;
  for (let i = 1; i <= 5; i++) {
    for (let j = 1; j <= 5; j++) {
      const x = Math.floor(c.width * (0.3 + 0.4 * i / 6)), y = Math.floor(c.height * (0.3 + 0.4 * j / 6));
      const [pr, pg] = ctx.getImageData(x, y, 1, 1).data;
      r += pr; g += pg; maxR = Math.max(maxR, pr); n++;
    }
  }
  return { r: r / n, g: g / n, maxR, width: c.width };
}, selector);

try {
  await page.goto(`${base}/review/login`);
  await page.fill("#key", clinicianKey);
  await Promise.all([page.waitForURL(`${base}/review`), page.click("#sign-in")]);
  await page.goto(`${base}/review/exams/${examId}`);
  await page.waitForFunction(() => document.querySelectorAll(".viewer.drawn").length === 2, null, { timeout: 30000 });

  // Layout: both eyes (right eye on the viewer's left) and the sign-off button in view.
  const layout = await page.evaluate(() => {
    const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, right: r.right, bottom: r.bottom, w: r.width, h: r.height }; };
    const right = document.querySelector(".eye.right .viewer"), left = document.querySelector(".eye.left .viewer");
    const sign = document.getElementById("sign-off");
    const s = box(sign);
    const hit = document.elementFromPoint(s.x + s.w / 2, s.y + s.h / 2);
    return { right: box(right), left: box(left), sign: s, signOnTop: hit === sign || sign.contains(hit),
      vw: window.innerWidth, vh: window.innerHeight, scrollY: window.scrollY };
  });
  const inView = (b) => b.x >= 0 && b.y >= 0 && b.right <= layout.vw && b.bottom <= layout.vh && b.w > 0 && b.h > 0;
  expect(layout.scrollY === 0, "page not scrolled");
  expect(inView(layout.right) && inView(layout.left), `both eyes' viewers in the viewport: ${JSON.stringify(layout)}`);
  expect(inView(layout.sign) && layout.signOnTop, `sign-off button visible: ${JSON.stringify(layout)}`);
  expect(layout.right.x < layout.left.x, "right eye on the viewer's left");
  expect(layout.right.w >= 400 && layout.right.h >= 400, `viewers are large: ${JSON.stringify(layout.right)}`);
  await shot("viewer-01-layout");

  // Display-sized renditions only so far: no original, no heatmap.
  expect(requested(/\/view\.jpg\?w=/).length >= 2, `renditions requested: ${requests.join(" ")}`);
  expect(requested(/\/original$/).length === 0, `no original before zooming: ${requests.join(" ")}`);
  expect(requested(/heatmap/).length === 0, `no heatmap before it is shown: ${requests.join(" ")}`);
  expect(await page.evaluate(() => [...document.querySelectorAll("img.heat")].every((i) => !i.hasAttribute("src"))), "heat layers have no src yet");
  const renditionWidth = (await sample(".eye.right .viewer")).width;
  const fullWidth = Number(await page.getAttribute(".eye.right .viewer", "data-width"));
  expect(renditionWidth < fullWidth, `the rendition (${renditionWidth}) is smaller than the original (${fullWidth})`);

  // Zoom into the right eye: wheel over it, then the + key (acting on the hovered viewer).
  const rv = ".eye.right .viewer";
  const cx = layout.right.x + layout.right.w / 2, cy = layout.right.y + layout.right.h / 2;
  await page.mouse.move(cx, cy);
  await page.mouse.wheel(0, -400);
  await page.waitForFunction((sel) => Number(document.querySelector(sel).dataset.zoom) > 1, rv);
  await page.keyboard.press("+");
  await page.keyboard.press("+");
  const zoomed = await page.evaluate((sel) => {
    const v = document.querySelector(sel);
    return { zoom: Number(v.dataset.zoom), transform: v.querySelector(".stage").style.transform };
  }, rv);
  expect(zoomed.zoom > 2, `zoomed in: ${JSON.stringify(zoomed)}`);
  expect(zoomed.transform.includes(`scale(${zoomed.zoom}`) || zoomed.transform.includes("scale("), `CSS transform set: ${zoomed.transform}`);
  expect(await page.getAttribute(".eye.left .viewer", "data-zoom") === "1", "the left eye did not zoom");
  await page.waitForFunction((sel) => document.querySelector(sel).dataset.source === "original", rv, { timeout: 30000 });
  expect(requested(/\/original$/).length === 1, `one original fetched after zooming: ${requests.join(" ")}`);
  expect((await sample(rv)).width === fullWidth, "the canvas now holds the full-size original");
  // Pan by dragging.
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  await page.mouse.move(cx + 80, cy + 40, { steps: 5 });
  await page.mouse.up();
  const panned = await page.evaluate((sel) => ({ x: Number(document.querySelector(sel).dataset.panX), y: Number(document.querySelector(sel).dataset.panY) }), rv);
  expect(Math.abs(panned.x) > 0 || Math.abs(panned.y) > 0, `panned: ${JSON.stringify(panned)}`);
  await shot("viewer-02-zoomed");
  await page.keyboard.press("0");
  const reset = await page.evaluate((sel) => { const d = document.querySelector(sel).dataset; return [d.zoom, d.panX, d.panY]; }, rv);
  expect(reset.join(",") === "1,0,0", `reset to fit: ${reset}`);

  // Pinch (two pointers moving apart) zooms about their midpoint; reset with the button.
  await page.evaluate((sel) => {
    const v = document.querySelector(sel), r = v.getBoundingClientRect();
    const fire = (type, id, x, y) => v.dispatchEvent(new PointerEvent(type, { pointerId: id, pointerType: "touch", isPrimary: id === 11,
      clientX: r.left + x, clientY: r.top + y, bubbles: true, cancelable: true }));
    fire("pointerdown", 11, 150, 150);
    fire("pointerdown", 12, 200, 200);
    fire("pointermove", 12, 210, 210);
    fire("pointermove", 12, 300, 300);
    fire("pointerup", 12, 300, 300);
    fire("pointerup", 11, 150, 150);
  }, rv);
  const pinched = Number(await page.getAttribute(rv, "data-zoom"));
  expect(pinched > 1.5, `pinch zoomed in: ${pinched}`);
  await page.click(`${rv} button[data-zoom-step=reset]`);
  expect(await page.getAttribute(rv, "data-zoom") === "1", "the reset button fits the image again");

  // Green channel (red-free): the rendered pixels lose their red.
  const before = await sample(rv);
  expect(before.r > 20, `the photograph has red before: ${JSON.stringify(before)}`);
  await page.keyboard.press("g");
  await page.waitForFunction((sel) => document.querySelector(sel).dataset.green === "on", rv);
  const green = await sample(rv);
  expect(green.maxR <= 2 && green.g > 5, `red channel ~0 and green kept: ${JSON.stringify(green)}`);
  expect(await page.isChecked("#green-toggle"), "the green-channel box follows the key");
  await shot("viewer-03-green");
  // Brightness: ] three times brightens the green.
  for (let i = 0; i < 3; i++) await page.keyboard.press("]");
  expect(await page.inputValue("#brightness") === "130", "brightness slider moved by the key");
  const brighter = await sample(rv);
  expect(brighter.g > green.g, `brighter: ${green.g} -> ${brighter.g}`);
  await page.keyboard.press("g");
  await page.click("#viewer-reset");
  const restored = await sample(rv);
  expect(Math.abs(restored.r - before.r) < 3, `reset restores the photograph: ${JSON.stringify(restored)} vs ${JSON.stringify(before)}`);

  // Heatmap: fetched only now, shown at the slider's opacity, with legend and caption.
  expect(requested(/heatmap/).length === 0, "still no heatmap request");
  await page.click("label[for=heatmap-toggle]");
  await page.waitForFunction(() => {
    const heat = [...document.querySelectorAll("img.heat")];
    return heat.length === 2 && heat.every((i) => i.complete && i.naturalWidth === 512 && getComputedStyle(i).opacity === "0.5");
  }, null, { timeout: 30000 });
  expect(requested(/\/heatmap-layer\.png$/).length === 2, `two heatmap layers fetched: ${requests.join(" ")}`);
  await page.fill("#heat-opacity", "80");
  await page.waitForFunction(() => [...document.querySelectorAll("img.heat")].every((i) => getComputedStyle(i).opacity === "0.8"));
  expect((await page.textContent("#heat-caption")).includes("referable diabetic retinopathy"), "caption says what the heatmap shows");
  expect(await page.isVisible(".legend .ramp"), "legend visible");
  expect((await page.textContent("#viewer-keys")).includes("green channel"), "keys documented");
  await shot("viewer-04-heatmap");

  // On a 1920x1080 screen each eye's viewer is larger than the model's 512-pixel crop.
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForFunction(() => [...document.querySelectorAll(".viewer")].every((v) => v.clientWidth > 512 && v.clientHeight > 512));
  const bigger = await page.evaluate(() => {
    const s = document.getElementById("sign-off").getBoundingClientRect();
    return [...document.querySelectorAll(".viewer")].every((v) => v.getBoundingClientRect().bottom <= window.innerHeight) && s.bottom <= window.innerHeight;
  });
  expect(bigger, "at 1920x1080 both eyes and the sign-off button still fit the screen");
  await page.setViewportSize({ width: 1440, height: 900 });

  // The whole-window viewer keeps the eye's label.
  const href = await page.getAttribute(".eye.right a[href$='/view']", "href");
  await page.goto(`${base}${href}`);
  const title = await page.title();
  expect(title.includes(`Right eye (OD) · exam ${examRef}`), `viewer window title: ${title}`);
  await page.waitForFunction(() => document.querySelectorAll(".viewer.drawn").length === 1, null, { timeout: 30000 });
  // Without JavaScript the photographs still show, fitted in their boxes, from renditions.
  const plain = await browser.newPage({ viewport: { width: 1440, height: 900 }, javaScriptEnabled: false });
  await plain.goto(`${base}/review/login`);
  await plain.fill("#key", clinicianKey);
  await Promise.all([plain.waitForURL(`${base}/review`), plain.click("#sign-in")]);
  await plain.goto(`${base}/review/exams/${examId}`);
  await plain.waitForFunction(() => [...document.querySelectorAll("img.photo")].every((i) => i.complete && i.naturalWidth > 0));
  const noScript = await plain.evaluate(() => [...document.querySelectorAll("img.photo")].map((i) => {
    const r = i.getBoundingClientRect(), box = i.closest(".viewer").getBoundingClientRect();
    return { src: i.currentSrc, visible: r.width > 300 && r.right <= box.right + 1 && r.bottom <= box.bottom + 1 };
  }));
  expect(noScript.length === 2 && noScript.every((p) => p.visible && /\/view\.jpg\?w=/.test(p.src)), `no-JS photographs: ${JSON.stringify(noScript)}`);
  await plain.close();

  const errors = consoleErrors.filter((m) => !m.startsWith("Failed to load resource"));
  expect(errors.length === 0, `no console errors (CSP included): ${errors.join(" | ")}`);
  expect(failed.length === 0, `no failed requests: ${failed.join(" | ")}`);
  console.log("viewer e2e: ok");
} catch (e) {
  await page.screenshot({ path: path.join(shots, "viewer-failure.png"), fullPage: true }).catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
