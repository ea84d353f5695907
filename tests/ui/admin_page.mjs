// Drives the admin page in Debian's chromium with playwright-core (tests/ui/test_browser.py runs it).
// argv: base URL, admin token, user token, artifacts folder. Prints one JSON line of what it saw.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [base, adminToken, userToken, artifacts] = process.argv.slice(2);
const seen = {};
const shot = (page, name) => page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });

async function load(n) {
  // Generated load: n decisions for one user, through the PDP's decision API.
  for (let i = 0; i < n; i++) {
    await fetch(`${base}/v1/check`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ request: { method: "GET", path: "/api/v1/sessions",
        headers: { authorization: `Bearer ${userToken}` } } }) });
    await new Promise((r) => setTimeout(r, 20));
  }
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  // A failed fetch shows as a console error; those are kept apart, with their URLs.
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) errors.push(msg.text());
  });
  const failed = [];
  page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`); });
  await page.goto(`${base}/ui/`);
  await page.locator("#signin-panel").waitFor();
  // A wrong token is refused on the page.
  await page.fill("#token", "not-a-token");
  await page.click("#signin");
  await page.waitForFunction(() => document.getElementById("signin-error").textContent.length > 0);
  seen.bad_signin = await page.textContent("#signin-error");
  await shot(page, "admin-signin");
  await page.fill("#token", adminToken);
  await page.click("#signin");
  await page.locator("#app").waitFor({ state: "visible" });
  seen.who = await page.textContent("#who");
  seen.session_cookie_http_only = (await page.context().cookies()).find((c) => c.name === "lucid_ui_session").httpOnly;
  seen.script_sees_session = await page.evaluate(() => document.cookie.includes("lucid_ui_session"));

  // Live numbers move under load.
  await page.waitForFunction(() => document.getElementById("total").textContent !== "–");
  seen.total_before = Number(await page.textContent("#total"));
  await load(60);
  await page.waitForFunction((before) => Number(document.getElementById("total").textContent) >= before + 60,
    seen.total_before, { timeout: 20000 });
  seen.total_after = Number(await page.textContent("#total"));
  seen.p99 = await page.textContent("#p99");
  seen.reasons = await page.textContent("#reasons");
  seen.deps = await page.locator("#deps li").allTextContents();
  await page.waitForSelector('#quota-keys tr[data-key="user:loadgen"]', { timeout: 20000 });
  seen.quota_before = await page.textContent('#quota-keys tr[data-key="user:loadgen"]');
  await shot(page, "admin-live");

  // Reset that key's quota from the page (cookie session + CSRF token).
  await page.click('#quota-keys tr[data-key="user:loadgen"] button');
  await page.waitForFunction(() => {
    const row = document.querySelector('#quota-keys tr[data-key="user:loadgen"]');
    return row && row.textContent.includes("user_per_minute: 200 left");
  }, null, { timeout: 20000 });
  seen.quota_after = await page.textContent('#quota-keys tr[data-key="user:loadgen"]');

  // The decision log, filtered by subject.
  await page.fill("#f-subject", "loadgen");
  await page.selectOption("#f-decision", "allow");
  await page.click("#filters button");
  await page.waitForFunction(() => document.querySelectorAll("#decision-log tbody tr").length > 0);
  seen.log_rows = await page.locator("#decision-log tbody tr td:nth-child(3)").allTextContents();
  await shot(page, "admin-decisions");

  // The playground: a picked input on the loaded policy, then a draft, then a replay.
  await page.selectOption("#pg-sample", "user GET /api/v1/sessions");
  await page.click("#pg-eval");
  await page.waitForFunction(() => document.getElementById("pg-allow").textContent === "true");
  seen.pg_loaded = { status: await page.textContent("#pg-status"), meta: await page.textContent("#pg-meta"),
    ms: await page.textContent("#pg-ms"), rules: await page.textContent("#pg-rules") };
  // Side by side: one row per engine, both decisions and timings, whether they agree, the rules that fired.
  await page.waitForSelector('#pg-engines tr[data-engine="opa"]');
  const engineRow = async (name) => (await page.locator(`#pg-engines tr[data-engine="${name}"] td`).allTextContents());
  seen.pg_engines = { wasm: await engineRow("wasm"), opa: await engineRow("opa"),
    agree: await page.textContent("#pg-agree"), fired: await page.locator("#pg-fired li").allTextContents() };
  await page.locator("#pg-engines").scrollIntoViewIfNeeded();
  await page.locator("#playground").screenshot({ path: `${artifacts}/admin-playground-engines.png` });
  await page.fill("#pg-draft", 'package gateway\n\ndecision := {"allow": false, "status": 451, "reason": "draft says no"}\n');
  await page.click("#pg-eval");
  await page.waitForFunction(() => document.getElementById("pg-status").textContent === "451");
  seen.pg_draft = { allow: await page.textContent("#pg-allow"), reason: await page.textContent("#pg-reason"),
    meta: await page.textContent("#pg-meta") };
  await shot(page, "admin-playground");
  await page.fill("#pg-draft", "");
  await page.locator("#decision-log tbody tr button").first().click();
  await page.waitForFunction(() => document.getElementById("pg-input").value.includes("loadgen") &&
    document.getElementById("pg-allow").textContent === "true");
  seen.pg_replay_input_has_token = (await page.inputValue("#pg-input")).includes(userToken);

  // Sign out while a poll's read is held in flight: the page waits for it before deleting the session,
  // so no read comes back 401, and no poll runs after sign-out.
  await page.route("**/ui/api/stats", async (route) => {
    await new Promise((r) => setTimeout(r, 600));
    await route.continue();
  });
  await page.waitForRequest((r) => new URL(r.url()).pathname === "/ui/api/stats", { timeout: 10000 });
  await page.click("#signout");
  await page.locator("#signin-panel").waitFor({ state: "visible" });
  let readsAfterSignout = 0;
  page.on("request", (r) => { if (new URL(r.url()).pathname.startsWith("/ui/api/")) readsAfterSignout += 1; });
  await new Promise((r) => setTimeout(r, 2600)); // longer than the page's poll interval (2 s)
  seen.reads_after_signout = readsAfterSignout;
  seen.signed_out = true;
  seen.errors = errors;
  seen.failed = [...new Set(failed)].sort();
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
