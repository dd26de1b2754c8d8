// Drives the operator console in headless Chromium (playwright-core with Debian's chromium):
// the steps of cli/tests/console.rs. Arguments: console URL, operator token, a directory for
// hand-shake files and screenshots. Prints one JSON line with what it saw; exits 1 on a
// failed expectation.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const [url, token, dir] = process.argv.slice(2);
const shots = process.env.REPLICATOR_SCREENSHOTS || dir;
const seen = { orders: [], broken: [] };

function fail(msg) {
  console.error(`browser: ${msg}`);
  process.exit(1);
}

async function waitFor(what, fn, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(url);
  // A marker a reload would wipe: everything below happens in this one page load.
  await page.evaluate(() => { window.__noReload = true; });

  // The run appears in the list by itself; open it.
  const runLink = await waitFor("the run in the list", () => page.$("#runs a"));
  await page.screenshot({ path: path.join(shots, "console-runs.png") });
  await runLink.click();
  const status = (table) => page.evaluate((t) => {
    const el = document.querySelector(`tr[data-table="${t}"] .status`);
    return el ? el.dataset.status : null;
  }, table);
  const watch = async (name, table) => {
    const s = await status(table);
    if (s && seen[name][seen[name].length - 1] !== s) seen[name].push(s);
    return s;
  };
  // sales.orders waits (its target is leased by the test); tell the test we are watching.
  await waitFor("sales.orders not yet done", async () => {
    const s = await watch("orders", "sales.orders");
    return s && s !== "succeeded" ? s : null;
  });
  fs.writeFileSync(path.join(dir, "watching"), "");
  await waitFor("sales.orders succeeded", async () => (await watch("orders", "sales.orders")) === "succeeded");
  await waitFor("sales.broken failed", async () => (await watch("broken", "sales.broken")) === "failed");
  await page.screenshot({ path: path.join(shots, "console-run.png"), fullPage: true });

  // The failed table's reason, in its details.
  await page.click('tr[data-table="sales.broken"] td:nth-child(2)');
  const reason = await waitFor("the reason", () => page.evaluate(() => {
    const row = document.querySelector("tr.detail-row .reason");
    return row ? row.textContent : null;
  }));
  await page.screenshot({ path: path.join(shots, "console-task.png"), fullPage: true });

  // Replay without the token: refused.
  await page.click("#replay");
  const refused = await waitFor("the refusal", async () => {
    const f = await page.textContent("#flash");
    return f && f.includes("refused") ? f : null;
  });
  const brokenAfterRefusal = await status("sales.broken");
  // The test restores the missing file; then replay with the token.
  fs.writeFileSync(path.join(dir, "refused"), "");
  await waitFor("the fix", () => fs.existsSync(path.join(dir, "fixed")));
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.click("#replay");
  const replayed = await waitFor("the replay", async () => {
    const f = await page.textContent("#flash");
    return f && f.startsWith("replayed") ? f : null;
  });
  await waitFor("sales.broken succeeded", async () => (await watch("broken", "sales.broken")) === "succeeded");
  const noReload = await page.evaluate(() => window.__noReload === true);

  // The dead letters page renders (empty now: the replay took the letter back).
  await page.click('a[href="#/dead-letters"]');
  await page.waitForSelector("#dead-letters");

  // Sync group `sales`: sync it now, watch its cut arrive, then a failover dry run.
  await page.click('a[href="#/groups"]');
  await page.waitForSelector('tr[data-group="sales"] button.sync-now');
  await page.click('tr[data-group="sales"] button.sync-now');
  const synced = await waitFor("the sync to start", async () => {
    const f = await page.textContent("#flash");
    return f && f.startsWith("sync of group sales started") ? f : null;
  });
  const groupStatus = await waitFor("the group's cut", () => page.evaluate(() => {
    const el = document.querySelector('tr[data-group="sales"] .status');
    return el && el.dataset.status === "success" ? el.dataset.status : null;
  }));
  await page.click('tr[data-group="sales"] button.failover');
  const failover = await waitFor("the failover dry run", async () => {
    const f = await page.textContent("#flash");
    return f && f.startsWith("failover of sales") ? f : null;
  });
  await page.screenshot({ path: path.join(shots, "console-groups.png") });
  const noReloadAtEnd = await page.evaluate(() => window.__noReload === true);
  await browser.close();
  console.log(JSON.stringify({ seen, reason, refused, brokenAfterRefusal, replayed, noReload: noReload && noReloadAtEnd, synced, groupStatus, failover }));
})().catch((e) => fail(e.stack || String(e)));
