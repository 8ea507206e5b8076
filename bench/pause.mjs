// Pause and resume latency (memory kept, cgroup freezer) against a private cubed:
//   API round trip of POST /sandboxes/{id}/pause (204) and POST /v2/sandboxes/{id}/connect (201), and the
//   freeze/thaw time cubed measured itself (from the sandbox log), for an idle sandbox, a busy one
//   (a shell loop plus 50 sleeping processes and 64 MB written to its tmpfs), and the extra latency of a
//   data-plane request that auto-resumes a paused sandbox.
// Usage: node bench/pause.mjs [--out bench/pause-results.json]   (needs build/ and the test template)
import fs from 'node:fs';
import os from 'node:os';
import { Cubed, api, dataRequest } from '../tests/e2e/harness.mjs';

const outPath = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'bench/pause-results.json';
const N = Number(process.env.BENCH_N_PAUSE || 50);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r2 = (x) => Math.round(x * 100) / 100;
const summary = (xs) => ({ n: xs.length, p50: r2(pct(xs, 50)), p95: r2(pct(xs, 95)), p99: r2(pct(xs, 99)), max: r2(Math.max(...xs)) });

async function create(c, body = {}) {
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 600, ...body } });
  if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
  return r.json;
}

// Run a shell command through envd's Connect API (unary-style: read the whole stream).
async function sh(c, sbx, cmd) {
  const payload = JSON.stringify({ process: { cmd: '/bin/sh', args: ['-c', cmd] } });
  const frame = Buffer.alloc(5 + Buffer.byteLength(payload));
  frame.writeUInt32BE(Buffer.byteLength(payload), 1);
  frame.write(payload, 5);
  const r = await dataRequest(c, { sandboxId: sbx.sandboxID, method: 'POST', path: '/process.Process/Start', body: frame,
    headers: { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1', 'X-Access-Token': sbx.envdAccessToken,
      Authorization: 'Basic cm9vdDo=' } });
  if (r.status !== 200) throw new Error(`run ${cmd}: ${r.status} ${r.text}`);
}

// cubed logs "sandbox paused (froze in N us)" / "sandbox resumed (thawed in N us)".
async function serverTimes(c, id) {
  const r = await api(c, 'GET', `/v2/sandboxes/${id}/logs?limit=1000`);
  const freeze = [], thaw = [];
  for (const e of r.json.logs) {
    let m = /froze in (\d+) us/.exec(e.message);
    if (m) freeze.push(Number(m[1]) / 1000);
    m = /thawed in (\d+) us/.exec(e.message);
    if (m) thaw.push(Number(m[1]) / 1000);
  }
  return { freeze, thaw };
}

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
  const server = await serverTimes(c, sbx.sandboxID);
  return { apiPauseMs: summary(pause), apiResumeMs: summary(resume), freezeMs: summary(server.freeze), thawMs: summary(server.thaw) };
}

async function main() {
  const c = await new Cubed().start();
  const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release(),
    cgroup: fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1 (freezer controller)' }, date: new Date().toISOString(), n: N };
  try {
    const idle = await create(c);
    await cycles(c, idle, 3); // warm-up
    results.idle = await cycles(c, idle, N);

    const busy = await create(c);
    await sh(c, busy, 'head -c 67108864 /dev/urandom > /tmp/fill; for i in $(seq 50); do sleep 100000 >/dev/null 2>&1 & done; ' +
      '(while true; do :; done) >/dev/null 2>&1 & echo ok');
    results.busy = await cycles(c, busy, N);

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
    await c.stop();
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
}

main().catch((e) => { console.error(e); process.exit(1); });
