// Pause and resume latency (memory kept, cgroup freezer) against a private cubed:
//   API round trip of POST /sandboxes/{id}/pause (204) and POST /v2/sandboxes/{id}/connect (201), and the
//   freeze/thaw time cubed measured itself (from the sandbox log), for an idle sandbox, a busy one
//   (a shell loop plus 50 sleeping processes and 64 MB written to its tmpfs), and the extra latency of a
//   data-plane request that auto-resumes a paused sandbox.
// Usage: node bench/pause.mjs [--out bench/pause-results.json]   (needs build/ and the test template)
//        node bench/pause.mjs --tables [bench/pause-results.json]   (docs/benchmarks.md's tables)
import fs from 'node:fs';
import os from 'node:os';
import { Cubed, api, dataRequest } from '../tests/e2e/harness.mjs';
import { arg, createSandbox as create, logTimes, machine, printRows, r2, sh, summary } from './lib.mjs';

const outPath = arg('--out', 'bench/pause-results.json');
const N = Number(process.env.BENCH_N_PAUSE || 50);

async function cycles(c, sbx, n) {
  const pause = [], resume = [];
  for (let i = 0; i < n; i++) {
    let t0 = performance.now();
    let r = await api(c, 'POST', `/sandboxes/${sbx.sandboxID}/pause`, { body: {} });
    pause.push(performance.now() - t0);
    if (r.status !== 204) throw new Error(`pause: ${r.status} ${r.text}`);
    t0 = performance.now();
    r = await api(c, 'POST', `/v2/sandboxes/${sbx.sandboxID}/connect`, { body: {} });
    resume.push(performance.now() - t0);
    if (r.status !== 201) throw new Error(`connect: ${r.status} ${r.text}`);
  }
  // cubed logs "sandbox paused (froze in N us)" / "sandbox resumed (thawed in N us)".
  const freeze = (await logTimes(c, sbx.sandboxID, /froze in (\d+) us/)).map((us) => us / 1000);
  const thaw = (await logTimes(c, sbx.sandboxID, /thawed in (\d+) us/)).map((us) => us / 1000);
  return { apiPauseMs: summary(pause), apiResumeMs: summary(resume), freezeMs: summary(freeze), thawMs: summary(thaw) };
}

async function main() {
  const c = await new Cubed().start();
  const results = { machine: await machine(), date: new Date().toISOString(), n: N };
  try {
    const idle = await create(c);
    await cycles(c, idle, 3); // warm-up
    results.idle = await cycles(c, idle, N);

    const busy = await create(c);
    await sh(c, busy, 'head -c 67108864 /dev/urandom > /tmp/fill; for i in $(seq 50); do sleep 100000 >/dev/null 2>&1 & done; ' +
      '(while true; do :; done) >/dev/null 2>&1 & echo ok');
    results.busy = await cycles(c, busy, N);
    await api(c, 'DELETE', `/sandboxes/${busy.sandboxID}`); // its spinning loop would take a core from the rest

    // Auto-resume: a data-plane request to a paused sandbox vs. the same request to a running one.
    const auto = await create(c, { autoPause: true, autoResume: { enabled: true } });
    const health = () => dataRequest(c, { sandboxId: auto.sandboxID, path: '/health' });
    for (let i = 0; i < 5; i++) await health();
    const running = [], resumed = [];
    for (let i = 0; i < N; i++) {
      let t0 = performance.now();
      await health();
      running.push(performance.now() - t0);
      const r = await api(c, 'POST', `/sandboxes/${auto.sandboxID}/pause`, { body: {} });
      if (r.status !== 204) throw new Error(`pause: ${r.status}`);
      t0 = performance.now();
      const h = await health();
      resumed.push(performance.now() - t0);
      if (h.status !== 204 && h.status !== 200) throw new Error(`auto-resumed request: ${h.status}`);
    }
    results.autoResume = { runningRequestMs: summary(running), pausedRequestMs: summary(resumed) };
  } finally {
    results.loadavgEnd = os.loadavg().map(r2);
    await c.stop();
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  const rows = [];
  for (const k of ['idle', 'busy']) {
    rows.push([`${k}: API pause`, results[k].apiPauseMs], [`${k}: API connect (resume)`, results[k].apiResumeMs],
      [`${k}: freeze in cubed`, results[k].freezeMs], [`${k}: thaw in cubed`, results[k].thawMs]);
  }
  rows.push(['GET /health, running', results.autoResume.runningRequestMs],
    ['GET /health, paused + autoResume', results.autoResume.pausedRequestMs]);
  printRows(`pause (memory kept), ${outPath}`, rows);
}

// The tables of docs/benchmarks.md from a results file: `node bench/pause.mjs --tables [FILE]`.
function tables(r) {
  const ms = (x) => `${x.toFixed(2)} ms`;
  const pp = (s) => `${ms(s.p50)} / ${ms(s.p95)}`;
  const row = (label, k) => `| ${label} | **${ms(r[k].apiPauseMs.p50)}** / ${ms(r[k].apiPauseMs.p95)} | ` +
    `**${ms(r[k].apiResumeMs.p50)}** / ${ms(r[k].apiResumeMs.p95)} | ${pp(r[k].freezeMs)} | ${pp(r[k].thawMs)} |`;
  return [`Run ${r.date}, load ${r.machine.loadavg.join(' ')} → ${(r.loadavgEnd || []).join(' ')}`, '',
    '| Case | API `pause` (204) p50 / p95 | API `connect` (201) p50 / p95 | freeze in cubed p50 / p95 | thaw in cubed p50 / p95 |',
    '|---|---|---|---|---|',
    row('idle sandbox (envd only)', 'idle'),
    row('busy sandbox: a spinning shell loop, 50 sleeping processes, 64 MB in its tmpfs', 'busy'), '',
    '| Data-plane request (`GET /health` through the proxy to envd) | p50 | p95 |', '|---|---|---|',
    `| sandbox running | ${ms(r.autoResume.runningRequestMs.p50)} | ${ms(r.autoResume.runningRequestMs.p95)} |`,
    `| sandbox paused, created with \`autoResume\`: the request resumes it and is served | ${ms(r.autoResume.pausedRequestMs.p50)} | ` +
      `${ms(r.autoResume.pausedRequestMs.p95)} |`].join('\n');
}

if (process.argv.includes('--tables')) {
  const f = process.argv[process.argv.indexOf('--tables') + 1] || outPath;
  console.log(tables(JSON.parse(fs.readFileSync(f, 'utf8'))));
} else {
  main().catch((e) => { console.error(e); process.exit(1); });
}
