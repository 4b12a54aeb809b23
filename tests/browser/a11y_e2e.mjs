// Accessibility of the review pages: axe-core (WCAG 2.1 A/AA rules) run in Debian's
// headless Chromium on every page a clinician or an admin uses, in the states they see
// (sign-in, worklist, case with heatmap shown, a refused sign-off, audit, agreement, a
// styled error). Fails on any violation of impact "serious" or "critical"; lesser ones
// are printed. Run by tests/review_a11y.rs, which starts drscreen and passes the env below.
//
// axe is injected with `bypassCSP` on this browser context only: the pages' CSP allows
// scripts from drscreen itself, and axe-core is the test's, not the product's.
import { launch, need } from "./harness.mjs";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const base = need("DRS_URL");
const clinicianKey = need("DRS_CLINICIAN_KEY");
const adminKey = need("DRS_ADMIN_KEY");
const examId = need("DRS_EXAM_ID");
const shots = need("DRS_SHOTS");
// Extra pages (space-separated paths) that only exist in some states of the data.
const extraPaths = (process.env.DRS_EXTRA_PATHS || "").split(/\s+/).filter(Boolean);
fs.mkdirSync(shots, { recursive: true });

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, bypassCSP: true });
const page = await context.newPage();
const failures = [];
let checked = 0;

async function audit(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] }, resultTypes: ["violations"] }));
  checked += 1;
  for (const v of result.violations) {
    const line = `${name}: [${v.impact}] ${v.id}: ${v.help} (${v.nodes.length} nodes: ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")})`;
    if (v.impact === "serious" || v.impact === "critical") failures.push(line);
    else console.log(`minor: ${line}`);
  }
  await page.screenshot({ path: path.join(shots, `a11y-${name}.png`), fullPage: true });
}

async function signIn(key) {
  await page.goto(`${base}/review/login`);
  await page.fill("#key", key);
  await Promise.all([page.waitForURL(`${base}/review`), page.click("#sign-in")]);
}

try {
  await page.goto(`${base}/review/login`);
  await audit("sign-in");
  await signIn(clinicianKey);
  await audit("worklist");
  await page.goto(`${base}/review/exams/${examId}`);
  await audit("case");
  const toggle = page.locator("#heatmap-toggle");
  if (await toggle.count()) {
    await page.keyboard.press("h");
    await audit("case-heatmap");
  }
  // A refused sign-off: nothing filled in.
  const sign = page.locator("#sign-off");
  if (await sign.count()) {
    await sign.click();
    await page.waitForLoadState("load");
    await audit("case-refused");
  }
  await page.goto(`${base}/review/agreement`);
  await audit("agreement");
  await page.goto(`${base}/review?reviewed=sometimes`);
  await audit("bad-filter");
  for (const [i, p] of extraPaths.entries()) {
    await page.goto(`${base}${p}`);
    await audit(`extra-${i}`);
  }
  await page.goto(`${base}/review`);
  await Promise.all([page.waitForURL(`${base}/review/login`), page.click("nav button[type=submit]")]);
  await signIn(adminKey);
  await page.goto(`${base}/review/audit`);
  await audit("audit");
  if (failures.length) throw new Error(`axe-core: ${failures.length} serious or critical violations:\n${failures.join("\n")}`);
  console.log(`a11y e2e: ok (${checked} page states, no serious or critical violations)`);
} catch (e) {
  await page.screenshot({ path: path.join(shots, "a11y-failure.png"), fullPage: true }).catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
