// The web UI in a real browser (Debian's chromium, driven by playwright-core), as a team
// uses it: Carol signs in and starts a mission, watches it run live, opens a tool call's
// output and sees the publish gate; Bob signs in, approves from his inbox, watches it
// publish and opens the diffs; then the metrics. A screenshot of each page goes to
// $SHOTS. Run by crates/flightdeck/tests/browser.rs against a real `flightdeck serve`.
//
// Every check throws with what it saw; the process exits non-zero on the first failure.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("BASE_URL");
const SHOTS = env("SHOTS");
const require = createRequire(path.join(env("PLAYWRIGHT_MODULES"), "noop.js"));
const { chromium } = require("playwright-core");

mkdirSync(SHOTS, { recursive: true });
const log = (...args) => console.error("[browser]", ...args);
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  // Approve and deny ask for confirmation: the scenario says yes.
  page.on("dialog", (d) => d.accept());
  const shot = async (name) => {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
    log("screenshot", name);
  };

  // --- Carol signs in --------------------------------------------------------------------
  await page.goto(BASE + "/");
  check(page.url().includes("/login?next="), `an anonymous visit is sent to sign in (at ${page.url()})`);
  await shot("01-sign-in");
  await page.fill("#token", "fd_not-a-real-token");
  await page.click("button[type=submit]");
  check((await page.textContent(".error-box")).includes("not valid"), "a wrong token is refused with a message");
  // The refusal is a 401 page, which the browser logs; nothing else may be.
  consoleErrors.length = 0;
  await page.fill("#token", env("CAROL_TOKEN"));
  await page.click("button[type=submit]");
  await page.waitForSelector("h1:has-text('Missions')");
  check((await page.textContent(".who")).includes("@carol"), "signed in as @carol");
  await shot("02-missions-empty");

  // --- she starts a mission, with markup in a parameter ---------------------------------
  await page.click("a:has-text('New mission')");
  await page.fill("#template", "greet");
  await page.fill("#params", "name=<img src=x onerror=window.__injected=1>");
  await shot("03-new-mission");
  await page.click("#start-mission button[type=submit]");
  await page.waitForURL(/\/missions\/m-/);
  const missionUrl = page.url();
  const missionId = missionUrl.split("/missions/")[1].split(/[?#]/)[0];
  result.mission = missionId;
  log("started", missionId);

  // --- and watches it run live: the page updates itself, no reload ----------------------
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  check(await page.isVisible(".live-note"), "the page says it follows the running mission");
  await shot("04-mission-running");
  await page.waitForSelector(".badge.status-awaiting_approval", { timeout: 60000 });
  check(await page.evaluate(() => window.__sameDocument === true), "the status changed without a reload");
  check(await page.evaluate(() => window.__injected === undefined), "the parameter's markup did not run");
  const step = await page.textContent(".timeline");
  check(step.includes("<img src=x onerror=window.__injected=1>"), "the parameter is shown as text");

  // --- opens a tool call's output (the first one is closed: it succeeded) ----------------
  const first = page.locator("details.call", { hasText: "ls src" });
  check(!(await first.evaluate((d) => d.open)), "a successful tool call starts closed");
  await first.locator("summary").click();
  const output = await first.locator("pre.output").textContent();
  check(output.includes("<b>not bold</b>"), `the output is shown as text (saw ${JSON.stringify(output)})`);
  check((await first.locator("pre.output b").count()) === 0, "markup in the output is not rendered");
  const failed = page.locator("details.call.failed").first();
  check(await failed.evaluate((d) => d.open), "a failed tool call starts open");
  check((await failed.textContent()).includes("No such file or directory"), "the failed call shows its error");

  // --- keyboard: j moves through the timeline --------------------------------------------
  await page.keyboard.press("j");
  await page.keyboard.press("j");
  check((await page.locator(".ev.current").count()) === 1, "j selects an event");
  check(page.url().includes("#seq-"), "the selected event is a deep link");

  // --- sees the gate, and cannot approve their own mission --------------------------------
  const why = await page.textContent(".why");
  check(why.includes("publish") && why.includes("@bob"), `the page says what it waits for (${why})`);
  check((await page.locator("button[data-action=approve]").count()) === 0, "an operator has no approve button");
  await shot("05-mission-at-gate");

  // --- Carol signs out; Bob signs in where the link takes him -----------------------------
  await page.click("button:has-text('Sign out')");
  await page.waitForURL(/\/login/);
  await page.goto(BASE + "/approvals");
  check(page.url().includes("/login?next=/approvals"), "signed out: back to sign in");
  await page.fill("#token", env("BOB_TOKEN"));
  await page.click("button[type=submit]");
  await page.waitForSelector("h1:has-text('Approvals')");
  const inbox = await page.textContent("main");
  check(inbox.includes("Waiting for you (1)"), "Bob's inbox has the approval");
  check(inbox.includes("src/lib.rs"), "the inbox shows the changed file");
  await shot("06-approvals-inbox");

  // --- approves in one click and a confirmation -------------------------------------------
  await page.click("article.approval-card button[data-action=approve]");
  await page.waitForSelector("text=Waiting for you (0)", { timeout: 30000 });

  // --- watches it publish -------------------------------------------------------------------
  await page.goto(missionUrl);
  await page.waitForSelector(".badge.status-succeeded", { timeout: 60000 });
  const decided = await page.textContent(".decisions");
  check(decided.includes("@bob") && decided.includes("via web"), `the decision is Bob's, on the web (${decided})`);
  check(await page.isVisible(".final-diff"), "the final diff is shown");
  check((await page.textContent(".final-diff")).includes("pub fn greet()"), "the final diff has the change");
  // The commit message and the PR description carry the parameter's markup: as text.
  check((await page.textContent(".final-diff")).includes("Greet <img src=x"), "the commit message is shown as text");
  check((await page.textContent("pre.prose")).includes("<img src=x"), "the PR description is shown as text");
  check(await page.evaluate(() => window.__injected === undefined), "no markup a mission wrote ran");
  check((await page.textContent(".badge.chain-ok")).includes("verified"), "the chain is verified");
  await shot("07-mission-published");

  // --- the worktree as of a step -------------------------------------------------------------
  const change = page.locator("details.call", { hasText: "printf" });
  await change.locator("summary").click();
  await change.locator("a:has-text('Worktree diff at this step')").click();
  await page.waitForSelector("h1:has-text('Worktree at seq')");
  check((await page.textContent("pre.diff")).includes("+pub fn greet()"), "the step's diff has its change");
  await shot("08-step-diff");

  // --- metrics ---------------------------------------------------------------------------
  await page.click("a:has-text('Metrics')");
  await page.waitForSelector("svg.chart");
  const metrics = await page.textContent("table.metrics");
  check(metrics.includes("greet") && metrics.includes("100%"), `the metrics count the mission (${metrics})`);
  await shot("09-metrics");

  // --- a phone ---------------------------------------------------------------------------
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE + "/");
  await shot("10-missions-phone");
  await page.goto(missionUrl);
  await shot("11-mission-phone");

  check(consoleErrors.length === 0, `no script errors (${consoleErrors.join("; ")})`);
  result.ok = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
