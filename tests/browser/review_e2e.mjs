// End-to-end review flow in a real headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core): sign in, open the worklist, open the flagged exam with the
// keyboard, show the heatmap and check it actually loaded, grade and sign off, then as
// admin find the events in the audit log. Screenshots go to $DRS_SHOTS.
// Run by tests/review_browser.rs, which starts drscreen and passes the env below.
import { expect, launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";

const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const adminKey = need("DRS_ADMIN_KEY");
const examId = need("DRS_EXAM_ID");
const shots = need("DRS_SHOTS");
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
const step = async (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

async function signIn(key) {
  await page.goto(`${base}/review`);
  expect(page.url().endsWith("/review/login"), `redirect to sign-in, at ${page.url()}`);
  await page.fill("#key", key);
  await Promise.all([page.waitForURL(`${base}/review`), page.click("#sign-in")]);
}

try {
  await page.goto(`${base}/review/login`);
  await step("01-sign-in");
  await signIn(clinicianKey);
  const row = page.locator(`a[href="/review/exams/${examId}"]`);
  expect(await row.count() === 1, "the flagged exam is on the worklist");
  await step("02-worklist");

  // Keyboard: j selects the first (most urgent) row, Enter opens it.
  await page.keyboard.press("j");
  await Promise.all([page.waitForURL(`${base}/review/exams/${examId}`), page.keyboard.press("Enter")]);
  expect(await page.locator("h2", { hasText: "Right eye (OD)" }).count() === 1, "case view shows the right eye");

  // Heatmap on with the h key: every layer (loaded only now) decoded and shown at the
  // opacity slider's value.
  await page.keyboard.press("h");
  await page.waitForFunction(() => {
    const heat = [...document.querySelectorAll("img.heat")];
    const want = String(Number(document.getElementById("heat-opacity").value) / 100);
    return heat.length > 0 && heat.every((i) => i.complete && i.naturalWidth === 512 && getComputedStyle(i).opacity === want);
  }, null, { timeout: 30000 });
  const fieldsLoaded = await page.evaluate(() => {
    const photos = [...document.querySelectorAll("img.photo")];
    return photos.length === 2 && photos.every((i) => i.complete && i.naturalWidth > 0);
  });
  expect(fieldsLoaded, "the fundus images loaded");
  await step("03-case-heatmap");

  // Grade and sign off.
  await page.selectOption("#right_grade", "3");
  await page.selectOption("#right_dme", "no");
  await page.selectOption("#left_grade", "2");
  await page.selectOption("#left_dme", "no");
  // An outcome less urgent than the grades imply: refused without a reason, next to the
  // field and with the entries kept; signed with one.
  await page.selectOption("#outcome", "rescreen");
  expect((await page.textContent("#implied-outcome")).includes("Urgent referral"), "the implied outcome follows the grades");
  await page.fill("#note", "Browser test: IRMA in one quadrant.");
  await Promise.all([page.waitForLoadState("load"), page.waitForSelector("#err-outcome_reason"), page.click("#sign-off")]);
  const reasonError = await page.textContent("#err-outcome_reason");
  expect(reasonError.includes("imply urgent referral"), `the reason is asked for in words, got: ${reasonError}`);
  expect(await page.inputValue("#right_grade") === "3" && await page.inputValue("#outcome") === "rescreen", "the entries are kept");
  await step("04a-reason-required");
  await page.fill("#outcome_reason", "Browser test: seen in clinic last week, stable; the patient declines referral.");
  await Promise.all([page.waitForURL(/saved=\d+&signed=true/), page.click("#sign-off")]);
  const banner = await page.textContent("#banner");
  expect(banner.includes("signed off"), `sign-off banner, got: ${banner}`);
  const history = await page.textContent("#review-history");
  expect(history.includes("signed") && history.includes("the patient declines referral"), "history shows the signed version and its reason");
  await step("04-signed");

  // Sign out, sign in as admin, read the audit log.
  await Promise.all([page.waitForURL(`${base}/review/login`), page.click("nav button[type=submit]")]);
  await signIn(adminKey);
  await page.goto(`${base}/review/audit`);
  const audit = await page.textContent("#audit");
  for (const action of ["session.login", "exam.view", "review.save", "review.sign"]) {
    expect(audit.includes(action), `${action} in the audit log`);
  }
  expect(audit.includes(examId), "the exam id in the audit log");
  await step("05-audit");
  await page.goto(`${base}/review/agreement`);
  expect((await page.textContent("#agreement-summary")).includes("Quadratic weighted kappa"), "agreement summary");
  await step("06-agreement");
  console.log("review e2e: ok");
} catch (e) {
  await step("failure").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
