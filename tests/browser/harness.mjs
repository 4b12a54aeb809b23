// What every browser script here shares: its settings from the environment (set by the
// Rust test that runs it), Debian's headless Chromium launched the same way each time,
// and the one failure shape.
import { chromium } from "playwright-core";

/** An environment variable the Rust test must set. */
export const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

/** Fails the script with what was expected. */
export const expect = (cond, what) => { if (!cond) throw new Error(`expected: ${what}`); };

/** Debian's Chromium (or $CHROMIUM), headless, with nothing that reaches the network. */
export const launch = () => chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
