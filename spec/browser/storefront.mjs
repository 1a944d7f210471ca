// spec/browser/storefront.mjs -- the storefront (www/) in Debian's chromium, headless, driven by
// playwright-core (no browser download: the system chromium). storefront_spec.lua starts the
// server and the flash sale, then runs this:
//
//   FCFS_URL=http://127.0.0.1:PORT FCFS_MAIL_DIR=DIR FCFS_ADMIN_TOKEN=T FCFS_SHOTS=DIR node storefront.mjs
//
// With the admin token it creates a FLASH product (3 units) whose sale opens 10 s later, through
// the public API, just before the buyer needs it. A buyer signs up, reads the code from the mail file, verifies, logs in, waits on the flash page
// for the opening (live stock by SSE), buys (entry, then pay), and finds the order in the
// history; then the English toggle. A screenshot of every step goes to FCFS_SHOTS (each path is
// printed). Exit 0 when every step passed; a failing step prints its error and a last screenshot.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const base = process.env.FCFS_URL;
const mailDir = process.env.FCFS_MAIL_DIR;
const adminToken = process.env.FCFS_ADMIN_TOKEN;
const shots = process.env.FCFS_SHOTS;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
for (const [k, v] of Object.entries({ FCFS_URL: base, FCFS_MAIL_DIR: mailDir, FCFS_ADMIN_TOKEN: adminToken, FCFS_SHOTS: shots })) {
  if (!v) {
    console.error(`storefront.mjs: ${k} is not set`);
    process.exit(2);
  }
}
fs.mkdirSync(shots, { recursive: true });

const email = `buyer.${Date.now().toString(36)}@example.com`;
const password = "secret12!";
let n = 0;

async function shot(page, name) {
  n += 1;
  const file = path.join(shots, `${String(n).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`# screenshot: ${file}`);
}

// The 6-digit code of the newest mail to `to` (base64 body, as lua/mail.lua writes it).
function codeFromMail(to) {
  if (!fs.existsSync(mailDir)) return null;
  const files = fs.readdirSync(mailDir).filter((f) => f.endsWith(".eml"))
    .sort((a, b) => Number.parseInt(b, 10) - Number.parseInt(a, 10));
  for (const f of files) {
    const text = fs.readFileSync(path.join(mailDir, f), "utf8");
    const [head, body] = text.split("\r\n\r\n");
    if (!head.split("\r\n").some((l) => l.toLowerCase() === `to: ${to}`)) continue;
    const plain = /base64/i.test(head) ? Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8") : body;
    const m = plain.match(/\b(\d{6})\b/);
    if (m) return m[1];
  }
  return null;
}

async function until(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ locale: "ko-KR", viewport: { width: 1100, height: 800 } });
page.setDefaultTimeout(15000);
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

let step = "start";
try {
  step = "product list";
  await page.goto(base + "/");
  await page.waitForSelector("[data-testid=product-card]"); // the demo catalog (lua/cli/seed.lua)
  if ((await page.locator("html").getAttribute("lang")) !== "ko") throw new Error("not Korean by default");
  await shot(page, "products");

  step = "sign up";
  await page.click("a[href='#/signup']");
  await page.fill("[data-testid=signup-form] [name=email]", email);
  await page.fill("[data-testid=signup-form] [name=password]", password);
  await page.fill("[data-testid=signup-form] [name=name]", "김민수");
  await page.fill("[data-testid=signup-form] [name=phone]", "010-1234-5678");
  await page.fill("[data-testid=signup-form] [name=address]", "서울시 강남구 테헤란로 1");
  await shot(page, "signup");
  await page.click("[data-testid=signup-form] [data-testid=submit]");
  await page.waitForSelector("[data-testid=verify-form]");

  step = "verify with the mailed code";
  const code = await until("the verification mail", () => codeFromMail(email), 15000);
  await page.fill("[data-testid=verify-form] [name=code]", code);
  await shot(page, "verify");
  await page.click("[data-testid=verify-form] [data-testid=submit]");
  await page.waitForSelector("[data-testid=login-form]");

  step = "log in";
  await page.fill("[data-testid=login-form] [name=password]", password);
  await page.click("[data-testid=login-form] [data-testid=submit]");
  await page.waitForSelector("a[href='#/orders']:visible");
  await shot(page, "logged-in");

  step = "a flash sale opening in 10 s (admin, through the API)";
  const seoul = (ms) => new Date(ms + 9 * 3600e3).toISOString().slice(0, 19) + "+09:00";
  const productName = `브라우저 한정판 ${Date.now().toString(36)}`;
  const created = await page.request.post(`${base}/api/products`, {
    headers: { Authorization: `Bearer ${adminToken}` },
    data: { name: productName, description: "선착순 3개", price: 99000, type: "FLASH", stock: 3,
      sale_starts_at: seoul(Date.now() + 10000), sale_ends_at: seoul(Date.now() + 3600e3), per_user_limit: 1 },
  });
  if (created.status() !== 201) throw new Error(`product: ${created.status()} ${await created.text()}`);
  const flashId = (await created.json()).id;

  step = "flash page before the opening";
  await page.goto(`${base}/#/flash/${flashId}`);
  await page.waitForSelector("[data-testid=state][data-state]");
  const before = await page.getAttribute("[data-testid=state]", "data-state");
  const remainingBefore = Number(await page.textContent("[data-testid=remaining]"));
  console.log(`# flash state on arrival: ${before}, remaining ${remainingBefore}`);
  if (before !== "UPCOMING") throw new Error(`state before the opening: ${before}`);
  if (!(await page.isDisabled("[data-testid=enter]"))) throw new Error("entry enabled before the opening");
  if (!/판매가 시작되지/.test(await page.textContent("[data-testid=state-message]"))) throw new Error("no 'not open' message");
  await shot(page, "flash-countdown");

  step = "wait for the opening (live, by SSE)";
  await page.waitForSelector("[data-testid=state][data-state=OPEN]", { timeout: 60000 });
  if (await page.isVisible("[data-testid=state-message]")) throw new Error("a state message while open");
  const live = await page.textContent("[data-testid=live]");
  if (!/SSE/.test(live)) throw new Error(`live stock not by SSE: ${live}`);
  await shot(page, "flash-open");

  step = "entry";
  await page.click("[data-testid=enter]");
  await page.waitForSelector("[data-testid=held]");
  await until("the remaining count to drop", async () =>
    Number(await page.textContent("[data-testid=remaining]")) === remainingBefore - 1, 10000);
  await shot(page, "held");

  step = "pay";
  await page.click("[data-testid=pay]");
  await page.waitForSelector("[data-testid=paid]");
  await shot(page, "paid");

  step = "the paid order";
  await page.click("[data-testid=view-order]");
  await page.waitForSelector("[data-testid=order] [data-testid=order-status][data-status=ORDERED]");
  await shot(page, "order");

  step = "a second entry: the limit per member, said plainly";
  await page.goBack();
  await page.waitForSelector("[data-testid=state][data-state=OPEN]");
  await page.click("[data-testid=enter]");
  await page.waitForSelector("[data-testid=error]:has-text('이미 구매하셨습니다')");
  await shot(page, "already-purchased");

  step = "order history";
  await page.click("a[href='#/orders']");
  await page.waitForSelector("[data-testid=order-row]");
  const rows = await page.locator("[data-testid=order-row]").allTextContents();
  if (!rows.some((r) => r.includes(productName) && r.includes("배송 준비중"))) throw new Error(`order not in the history: ${rows.join(" | ")}`);
  await shot(page, "orders");

  step = "English";
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "en");
  await page.waitForSelector("[data-testid=order-status][data-status=ORDERED]:has-text('Preparing for shipment')");
  await shot(page, "orders-english");

  if (consoleErrors.length) throw new Error(`page errors: ${consoleErrors.join("; ")}`);
  console.log(`# storefront: every step passed (${email})`);
  await browser.close();
} catch (e) {
  console.error(`storefront.mjs: step "${step}" failed: ${e.stack || e}`);
  try { await shot(page, "failed"); } catch (e2) { /* the page is gone */ }
  await browser.close();
  process.exit(1);
}
