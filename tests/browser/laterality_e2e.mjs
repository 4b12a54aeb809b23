// The laterality check and the "small things" of issue 16 in a real headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core): an exam whose right-eye image
// has its optic disc on the left (a mirrored right-eye photograph) shows the laterality
// warning on that image only; every page opens with the synthetic-model banner; an
// ungradable image's quality reasons are sentences with their limits and its measures
// have units and limits; every time on every page is in one format with its zone.
// Screenshots go to $DRS_SHOTS. Run by tests/review_browser.rs, which starts drscreen,
// uploads the exams and passes the env below.
import { expect, launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";

const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const adminKey = need("DRS_ADMIN_KEY");
const mirroredExam = need("DRS_MIRRORED_EXAM_ID");
const ungradableExam = need("DRS_UNGRADABLE_EXAM_ID");
const shots = need("DRS_SHOTS");
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const cspViolations = [];
page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
const step = async (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

const NOTICE = "This model (dr-synth 1.4.0) was trained on synthetic images only and must not be used for patients.";
const TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/;

// The banner is the first thing on the page, above the header.
async function expectNotice(where) {
  const notice = page.locator("#model-notice");
  expect(await notice.count() === 1, `one model notice on ${where}`);
  expect((await notice.textContent()).trim() === NOTICE, `the notice's words on ${where}`);
  const first = await page.evaluate(() => document.body.firstElementChild && document.body.firstElementChild.id);
  expect(first === "model-notice", `the notice opens ${where}, first element is ${first}`);
}

// Every <time> reads "YYYY-MM-DD HH:MM UTC" and carries the instant it shows; no raw
// RFC 3339 timestamp is left in the page's text.
async function expectTimes(where, atLeast) {
  const times = await page.$$eval("time", (ts) => ts.map((t) => ({ text: t.textContent, at: t.getAttribute("datetime") })));
  expect(times.length >= atLeast, `at least ${atLeast} times on ${where}, found ${times.length}`);
  for (const t of times) {
    expect(TIME.test(t.text), `time "${t.text}" on ${where} in the one format`);
    const instant = new Date(t.at);
    expect(!Number.isNaN(instant.getTime()), `datetime "${t.at}" on ${where} parses`);
    expect(instant.toISOString().slice(0, 16).replace("T", " ") + " UTC" === t.text, `"${t.text}" shows ${t.at} in UTC`);
  }
  const raw = await page.evaluate(() => document.body.innerText.match(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/g));
  expect(raw === null, `no raw timestamps on ${where}: ${raw}`);
}

async function signIn(key) {
  await page.goto(`${base}/review/login`);
  await expectNotice("the sign-in page");
  await page.fill("#key", key);
  await Promise.all([page.waitForURL(`${base}/review`), page.click("#sign-in")]);
}

try {
  await signIn(clinicianKey);
  await expectNotice("the worklist");
  // Both grade-0 eyes say rescreen, but the contradicting photograph puts it on the worklist.
  expect(await page.locator(`tr[data-href="/review/exams/${mirroredExam}"]`).count() === 1,
    "the rescreen exam with a laterality contradiction is on the worklist");
  // Reviewed and open exams alike: the signed ungradable exam is listed with its time.
  await page.goto(`${base}/review?reviewed=all`);
  await expectTimes("the worklist", 1);

  // The exam whose right-eye image shows its disc on the left.
  await page.goto(`${base}/review/exams/${mirroredExam}`);
  await expectNotice("the case page");
  await expectTimes("the case page", 1);
  const warnings = page.locator(".laterality-warning");
  expect(await warnings.count() === 1, `one laterality warning, found ${await warnings.count()}`);
  const right = page.locator("section.eye.right .laterality-warning");
  expect(await right.count() === 1, "the warning is on the right eye's image");
  expect(await page.locator("section.eye.left .laterality-warning").count() === 0, "no warning on the left eye's image");
  const text = (await right.textContent()).trim();
  expect(text === "Disc position suggests a LEFT eye, but this image was sent as the right eye: check before signing.", `warning words: ${text}`);
  expect(await right.isVisible(), "the warning is visible");
  // It sits in the image's own caption, under the photograph it is about.
  const inFigure = await page.evaluate(() => !!document.querySelector("section.eye.right figure.fundus figcaption .laterality-warning"));
  expect(inFigure, "the warning is in the image's caption");
  // No silent swap: the image is still shown as the right eye.
  expect(await page.locator("section.eye.right h2", { hasText: "Right eye (OD)" }).count() === 1, "still the right eye");
  await right.scrollIntoViewIfNeeded();
  await step("laterality-01-warning");

  // The ungradable image: reasons in words with their limits, measures with units.
  await page.goto(`${base}/review/exams/${ungradableExam}`);
  await expectNotice("the ungradable case");
  await expectTimes("the ungradable case", 2); // received, and the signed review's time
  expect(await page.locator(".laterality-warning").count() === 0, "no laterality warning on a consistent exam");
  const reasons = await page.$$eval("section.eye.left .quality-reasons li", (lis) => lis.map((li) => li.textContent));
  expect(reasons.length > 0, "the ungradable left image lists its reasons");
  for (const r of reasons) {
    expect(!/[a-z]+_[a-z]+/.test(r), `reason in words, not a code: ${r}`);
    expect(/\.$/.test(r), `reason is a sentence: ${r}`);
  }
  const focus = reasons.find((r) => r.startsWith("Out of focus: sharpness "));
  expect(focus && / is below the \d\.\d{3} (advisory )?limit\.$/.test(focus), `focus reason with its limit: ${focus}`);
  const quality = await page.textContent("section.eye.left figcaption");
  expect(!quality.includes("out_of_focus") && !quality.includes("model_judged_ungradable"), "no reason codes in the caption");
  const details = page.locator("section.eye.left details", { hasText: "Quality measures and limits" });
  await details.locator("summary").click();
  const rows = await details.locator("table.measures tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  expect(rows.length === 5, `five measures, got ${rows.length}`);
  for (const [label, value, limit] of rows) {
    expect(!label.includes("_"), `measure label in words: ${label}`);
    expect(/^(at least|at most|\d)/.test(limit), `limit for ${label}: ${limit}`);
    expect(value.length > 0, `value for ${label}`);
  }
  expect(/^\d+\.\d%$/.test(rows[0][1]), `visible field in percent: ${rows[0][1]}`);
  expect(await details.locator("tr.beyond, tr.advisory").count() >= 1, "the blurred image's failing measure is marked");
  await details.scrollIntoViewIfNeeded();
  await step("laterality-02-quality-words");

  // The audit log (admin) shows its times in the same format.
  await Promise.all([page.waitForURL(`${base}/review/login`), page.click("nav button[type=submit]")]);
  await signIn(adminKey);
  await page.goto(`${base}/review/audit`);
  await expectNotice("the audit log");
  await expectTimes("the audit log", 3);
  await page.goto(`${base}/review/agreement`);
  await expectNotice("the agreement monitor");
  expect(cspViolations.length === 0, `no CSP violations: ${cspViolations.join("; ")}`);
  console.log("laterality flow ok");
} catch (e) {
  await step("laterality-failure").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
