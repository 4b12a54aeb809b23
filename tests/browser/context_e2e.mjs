// Patient context and "who and what" in a real headless Chromium (issue 16): the header
// names the signed-in clinician, the worklist shows the clinician's signed result beside
// the model's under labelled columns, the patient filter narrows the worklist, the newer
// exam's case page lists the older exam of the same patient (and not another patient's),
// and the comparison page shows the same eye of both exams with their images loaded.
// Run by tests/review_browser.rs, which starts drscreen and passes the env below.
import { expect, launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";

const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const clinicianName = need("DRS_CLINICIAN_NAME");
const olderId = need("DRS_EXAM_OLDER");
const newerId = need("DRS_EXAM_NEWER");
const otherId = need("DRS_EXAM_OTHER");
const patient = need("DRS_PATIENT");
const shots = need("DRS_SHOTS");
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const step = async (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const rowOf = (id) => page.locator(`tr[data-href="/review/exams/${id}"]`);

try {
  await page.goto(`${base}/review`);
  await page.fill("#key", clinicianKey);
  await Promise.all([page.waitForURL(`${base}/review`), page.click("#sign-in")]);
  const who = await page.textContent("header .who");
  expect(who.includes(`${clinicianName} · clinician`), `the header names the clinician, got: ${who}`);

  // Every exam, signed or not: labelled Model and Clinician (signed) columns.
  await page.goto(`${base}/review?reviewed=all`);
  const headings = await page.locator("#worklist thead th").allTextContents();
  expect(headings.filter((h) => h === "Clinician (signed)").length === 3, `three clinician columns, got ${headings}`);
  expect(headings.filter((h) => h === "Model").length === 3, `three model columns, got ${headings}`);
  const signedCells = await rowOf(olderId).locator("td.by-clinician").allTextContents();
  expect(signedCells[0] === "Referral", `the signed outcome leads the older exam's row, got ${signedCells}`);
  expect(signedCells[1].startsWith("2 ·") && signedCells[2].startsWith("2 ·"), `the signed grades, got ${signedCells}`);
  const openCells = await rowOf(newerId).locator("td.by-clinician").allTextContents();
  expect(openCells.every((c) => c === "–"), `no clinician reading for the unsigned exam, got ${openCells}`);
  expect(await rowOf(otherId).count() === 1, "the other patient's exam is listed before filtering");
  await step("context-01-worklist");

  // The patient filter, typed into the form.
  await page.fill("#patient-filter", patient);
  await Promise.all([page.waitForURL(/patient=/), page.click("form.filters button[type=submit]")]);
  expect(await rowOf(olderId).count() === 1 && await rowOf(newerId).count() === 1, "both exams of the patient");
  expect(await rowOf(otherId).count() === 0, "no other patient after filtering");
  expect(await page.locator("tr[data-href]").count() === 2, "exactly the patient's two exams");

  // The newer exam's case page lists the older one, not the other patient's.
  await page.goto(`${base}/review/exams/${newerId}`);
  const prior = page.locator("#prior-exams");
  expect((await prior.locator("h2").textContent()) === "Earlier exams of this patient", "the section heading");
  expect(await prior.locator(`tr[data-exam="${olderId}"]`).count() === 1, "the older exam is listed");
  expect(await prior.locator(`tr[data-exam="${otherId}"]`).count() === 0, "another patient's exam is not");
  const priorText = await prior.textContent();
  expect(priorText.includes("Referral") && priorText.includes(clinicianName), `the signed outcome and who signed it: ${priorText}`);
  await prior.scrollIntoViewIfNeeded();
  await step("context-02-prior-exams");

  // Compare the right eye of both exams: both images decoded, earlier exam first.
  await Promise.all([page.waitForURL(/\/review\/compare\?/), prior.locator("a.compare-link", { hasText: "compare right eye" }).click()]);
  const sides = await page.locator(".compare-side").evaluateAll((s) => s.map((x) => x.getAttribute("data-exam")));
  expect(sides.length === 2 && sides[0] === olderId && sides[1] === newerId, `older then newer, got ${sides}`);
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll(".compare-side img.field")];
    return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth === 512);
  }, null, { timeout: 30000 });
  const compareText = await page.textContent("#compare");
  expect(compareText.includes("Clinician (signed)") && compareText.includes("Model"), "labelled readings on the comparison");
  await step("context-03-compare");
  console.log("context e2e: ok");
} catch (e) {
  await step("context-failure").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
