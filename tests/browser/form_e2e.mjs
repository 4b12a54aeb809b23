// The review form in a real headless Chromium (issue 16: never lose typed work, keyboard
// grading, errors by field): sign off with nothing filled and see every field's error
// next to it; a partial draft autosaves and survives a reload; two exams graded and
// signed with the keyboard only ("sign and next"), ending on the worklist with the focus
// on a row; and, on a second server with a short session idle timeout, the expiry
// warning, "Stay signed in", an expired submit that keeps the entries through sign-in,
// and the folded amendment form. Screenshots go to $DRS_SHOTS.
// Run by tests/review_browser.rs, which starts the two drscreen servers.
import { expect, launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";

const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const [first, second] = need("DRS_EXAMS").split(",");
const expiryBase = need("DRS_EXPIRY_URL");
const expiryKey = need("DRS_EXPIRY_CLINICIAN_KEY");
const expiryExam = need("DRS_EXPIRY_EXAM");
const shots = need("DRS_SHOTS");
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
let page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
const step = async (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const value = (sel) => page.$eval(sel, (e) => e.value);
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));

async function signIn(url, key) {
  await page.goto(`${url}/review`);
  expect(page.url().endsWith("/review/login"), `redirect to sign-in, at ${page.url()}`);
  await page.fill("#key", key);
  await Promise.all([page.waitForURL(`${url}/review`), page.click("#sign-in")]);
}

try {
  await signIn(base, clinicianKey);

  // 1. Errors by field, all at once, in words: sign off with nothing filled and a note
  // one character over the limit (pasted whole: no maxlength cuts it).
  await page.goto(`${base}/review/exams/${first}`);
  expect(await page.$eval("#note", (e) => !e.hasAttribute("maxlength")), "no maxlength on the note");
  await page.fill("#note", "x".repeat(4001));
  expect((await page.textContent("#note-counter")).includes("4001 / 4000 characters: 1 too many"), "the counter warns");
  expect((await value("#note")).length === 4001, "nothing was cut");
  await Promise.all([page.waitForNavigation(), page.click("#sign-off")]);
  await page.waitForSelector("#error-summary");
  const summary = await page.$$eval("#error-summary li", (items) => items.map((i) => i.textContent));
  expect(summary.length === 4, `four problems listed at once: ${summary}`);
  for (const field of ["right_grade", "left_grade", "outcome", "note"]) {
    const aria = await page.$eval(`#${field}`, (e) => [e.getAttribute("aria-invalid"), e.getAttribute("aria-describedby")]);
    expect(aria[0] === "true" && aria[1] === `err-${field}`, `${field} is marked invalid and described: ${aria}`);
    const said = await page.textContent(`#err-${field}`);
    expect(said.length > 10 && !said.includes("_"), `${field}'s error in words: ${said}`);
  }
  expect(await page.evaluate(() => document.activeElement && document.activeElement.id === "error-summary"), "the summary has the focus");
  expect((await value("#note")).length === 4001, "the typed note is kept");
  expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "a long unbroken note does not widen the page");
  await step("form-04-field-errors");

  // 2. A partial draft autosaves (right eye only, a short note) and survives a reload.
  await page.fill("#note", "partial note");
  await page.selectOption("#right_grade", "3");
  await page.waitForFunction(() => /Draft saved \d\d:\d\d/.test(document.getElementById("autosave-status").textContent), null, { timeout: 30000 });
  expect((await page.getAttribute("#autosave-status", "aria-live")) === "polite", "the status is announced politely");
  await step("form-01-autosaved");
  await page.goto(`${base}/review/exams/${first}`);
  expect(await value("#right_grade") === "3" && await value("#left_grade") === "" && await value("#outcome") === "", "the partial draft is back");
  expect(await value("#note") === "partial note", "the note is back");

  // 3. Keyboard only, from the worklist: j + Enter opens the first case; keys grade it;
  // typing in the note does not trigger keys; Ctrl+Enter signs and opens the next case.
  await page.goto(`${base}/review`);
  await page.keyboard.press("j");
  await Promise.all([page.waitForURL(`${base}/review/exams/${first}`), page.keyboard.press("Enter")]);
  await page.focus("#note");
  await page.keyboard.press("End");
  await page.keyboard.type(" r4 l1");
  expect(await value("#right_grade") === "3", "keys do nothing while typing");
  expect((await value("#note")).endsWith(" r4 l1"), "the text was typed");
  await page.keyboard.press("Escape");
  for (const key of ["r", "3", "n", "l", "2", "n", "o"]) await page.keyboard.press(key);
  expect(await value("#right_grade") === "3" && await value("#right_dme") === "no", "right eye by keys");
  expect(await value("#left_grade") === "2" && await value("#left_dme") === "no", "left eye by keys");
  expect(await value("#outcome") === "urgent_referral", "o picks the implied outcome");
  await page.keyboard.press("o");
  expect(await value("#outcome") === "referral", "o again goes to the next");
  await page.keyboard.press("o");
  await page.keyboard.press("o");
  await page.keyboard.press("o");
  expect(await value("#outcome") === "urgent_referral", "and round");
  await step("form-03-keyboard");
  await Promise.all([page.waitForURL(`${base}/review/exams/${second}?previous=1`), page.keyboard.press("Control+Enter")]);
  expect((await page.textContent("#banner")).includes("previous case was signed off"), "the next case says the last was signed");
  for (const key of ["r", "4", "y", "l", "u", "o"]) await page.keyboard.press(key);
  expect(await value("#left_grade") === "ungradable" && await value("#right_dme") === "yes", "second case by keys");
  await step("form-03b-keyboard-second");
  await Promise.all([page.waitForURL(/\/review\?reviewed=all&done=true&focus=/), page.keyboard.press("Shift+S")]);
  expect((await page.textContent("#banner")).includes("No unsigned case is left"), "the worklist says none is left");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("data-href"));
  expect(focused === `/review/exams/${second}`, `focus on the row just handled, got ${focused}`);
  await step("form-03c-worklist-focus");

  // 4. Session expiry on the second server (idle timeout 10 s).
  await page.close();
  page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on("pageerror", (e) => errors.push(String(e)));
  await signIn(expiryBase, expiryKey);
  await page.goto(`${expiryBase}/review/exams/${expiryExam}`);
  await page.selectOption("#right_grade", "3");
  await page.selectOption("#right_dme", "no");
  await page.selectOption("#left_grade", "2");
  await page.selectOption("#left_dme", "no");
  await page.selectOption("#outcome", "urgent_referral");
  await page.fill("#note", "Typed before the session expired <b>kept</b>");
  await page.waitForSelector("#session-banner:not([hidden]) #stay-signed-in", { timeout: 30000 });
  expect((await page.textContent("#session-banner-text")).includes("Your session ends in"), "the warning says when");
  await page.click("#stay-signed-in");
  await page.waitForFunction(() => document.getElementById("autosave-status").textContent.includes("Session extended"), null, { timeout: 10000 });
  await page.waitForSelector("#session-banner.expired", { timeout: 60000 });
  await page.waitForTimeout(1500); // past the server's whole-second idle count
  await Promise.all([page.waitForURL(`${expiryBase}/review/exams/${expiryExam}/review`), page.click("#sign-off")]);
  expect((await page.textContent(".login")).includes("Your session has expired"), "the sign-in page says why");
  expect(await page.$eval("input[name='carry.note']", (e) => e.value) === "Typed before the session expired <b>kept</b>", "the note rides along");
  expect(await page.$$eval("input[name='carry.csrf'], input[name='carry.action']", (l) => l.length) === 0, "no old token, no action");
  await page.fill("#key", expiryKey);
  await Promise.all([page.waitForNavigation(), page.click("#sign-in")]);
  expect((await page.textContent("#banner")).includes("your entries were kept"), "the restored banner");
  expect(new URL(page.url()).pathname === `/review/exams/${expiryExam}`, `the case's own URL, got ${page.url()}`);
  expect(await value("#note") === "Typed before the session expired <b>kept</b>" && await value("#left_grade") === "2", "the form is filled");
  expect(await value("#outcome") === "urgent_referral", "the outcome is back");
  await step("form-02-expired-restored");
  await Promise.all([page.waitForURL(/saved=1&signed=true/), page.click("#sign-off")]);

  // 5. After sign-off the amendment form is folded; opened, its button says so.
  expect(!(await page.isVisible("#review-form")), "the amendment form starts folded");
  expect((await page.textContent("#amend-open")).trim() === "Amend this review", "the button to open it");
  await page.click("#amend-open");
  expect(await page.isVisible("#review-form"), "opened");
  expect((await page.textContent("#sign-off")).trim() === "Sign amendment", "the amendment's own button");
  await step("form-05-amend");

  expect(errors.length === 0, `no script errors: ${errors.join("; ")}`);
  console.log("form e2e: ok");
} catch (e) {
  await step("form-failure").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
