// Loads twingraph's GraphiQL page in headless Chromium with no network but
// the server under test, runs a query through the page's own editor and
// Run button, and prints what happened as JSON (the test suite asserts):
//   node graphiql.mjs <page url> <query> [<subscription> <mutation>]
// With a subscription, it is run next from the editor too; once the page's
// WebSocket is open the mutation is sent (over HTTP, from here) and the
// first event the page shows is recorded.
// CHROMIUM names the browser (default: Debian's /usr/bin/chromium).
import { chromium } from 'playwright-core';

const [pageUrl, query, subscription, mutation] = process.argv.slice(2);
const origin = new URL(pageUrl).origin;
const outcome = {
  blocked: [], violations: [], errors: [], title: null, response: null, event: null,
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // No DNS at all, so nothing but the loopback server can be reached.
  args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
});
try {
  const context = await browser.newContext({ serviceWorkers: 'block' });
  // Anything for another origin is refused and recorded.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('data:')) return route.continue();
    outcome.blocked.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') outcome.errors.push(m.text());
  });
  page.on('pageerror', (e) => outcome.errors.push(String(e)));
  await page.exposeFunction('__violation', (v) => outcome.violations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__violation(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(pageUrl, { waitUntil: 'load' });
  await page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout: 30000 });
  outcome.title = await page.title();
  await page.evaluate((q) => {
    document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
  }, query);
  await page.click('.graphiql-execute-button');
  await page.waitForFunction(() => {
    const cm = document.querySelector('.graphiql-response .CodeMirror');
    return cm && cm.CodeMirror.getValue().includes('"data"');
  }, null, { timeout: 30000 });
  outcome.response = JSON.parse(await page.evaluate(() =>
    document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()));
  if (subscription) {
    const socket = page.waitForEvent('websocket', { timeout: 30000 });
    await page.evaluate((q) => {
      document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
      document.querySelector('.graphiql-response .CodeMirror').CodeMirror.setValue('');
    }, subscription);
    // GraphiQL parses the editor's text a moment after it changes and
    // picks the transport from that parse: a click at once would still
    // see the query before it (as a person never does).
    await page.waitForTimeout(700);
    await page.click('.graphiql-execute-button');
    await socket;
    // The page subscribes once its WebSocket is open and acknowledged, and
    // the server registers it a moment later: the mutation is sent again
    // (every half second) until the page shows an event.
    const shown = () => page.evaluate(() =>
      document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()
        .includes('"data"'));
    for (let i = 0; i < 60 && !(await shown()); i += 1) {
      const sent = await fetch(new URL('/graphql', origin), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: mutation }),
      });
      outcome.mutation = await sent.json();
      await page.waitForFunction(() => document.querySelector('.graphiql-response .CodeMirror')
        .CodeMirror.getValue().includes('"data"'), null, { timeout: 500 }).catch(() => {});
    }
    outcome.event = JSON.parse(await page.evaluate(() =>
      document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()));
  }
} catch (e) {
  outcome.errors.push(`driver: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(outcome));
