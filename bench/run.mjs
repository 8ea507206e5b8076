// Benchmarks of the first slice, measured in one run on this machine against a private cubed:
//   cold create latency (API, concurrency 1 and 20), SDK create -> first commands.run('true'),
//   commands.run('true') round trip, cube-envd idle RSS.
// Usage: node bench/run.mjs [--out bench/results.json]   (needs build/ and the test template; see bench/README.md)
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { Cubed, api, loadSdk, hostPids, readProc } from '../tests/e2e/harness.mjs';

const outPath = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'bench/results.json';
const N_SEQ = Number(process.env.BENCH_N_SEQ || 40);
const N_CONC = Number(process.env.BENCH_N_CONC || 60);
const CONC = 20;
const N_SDK = Number(process.env.BENCH_N_SDK || 20);
const N_RUN = Number(process.env.BENCH_N_RUN || 100);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const summary = (xs) => ({ n: xs.length, p50: pct(xs, 50), p95: pct(xs, 95), p99: pct(xs, 99), min: Math.min(...xs), max: Math.max(...xs) });
const r2 = (x) => Math.round(x * 100) / 100;

async function timedCreate(c) {
  const t0 = performance.now();
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 300 } });
  const ms = performance.now() - t0;
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  return { ms, id: r.json.sandboxID };
}

async function kill(c, id) {
  const r = await api(c, 'DELETE', `/sandboxes/${id}`);
  if (r.status !== 204) throw new Error(`kill ${id}: ${r.status}`);
}

async function main() {
  const c = await new Cubed().start();
  const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: r2(os.totalmem() / 2 ** 30), kernel: os.release() }, date: new Date().toISOString() };
  try {
    // warm-up: page cache for the template and envd
    for (let i = 0; i < 3; i++) { const { id } = await timedCreate(c); await kill(c, id); }

    const seq = [];
    for (let i = 0; i < N_SEQ; i++) { const { ms, id } = await timedCreate(c); seq.push(ms); await kill(c, id); }
    results.coldCreateC1 = summary(seq);

    const conc = [];
    for (let done = 0; done < N_CONC; done += CONC) {
      const batch = await Promise.all(Array.from({ length: CONC }, () => timedCreate(c)));
      batch.forEach((b) => conc.push(b.ms));
      await Promise.all(batch.map((b) => kill(c, b.id)));
    }
    results.coldCreateC20 = summary(conc);

    const { Sandbox } = await loadSdk('e2b-2.51');
    const sdk = [];
    for (let i = 0; i < N_SDK; i++) {
      const t0 = performance.now();
      const sbx = await Sandbox.create(c.sdkOpts);
      await sbx.commands.run('true');
      sdk.push(performance.now() - t0);
      await sbx.kill();
    }
    results.sdkCreateToFirstRun = summary(sdk);

    const sbx = await Sandbox.create(c.sdkOpts);
    for (let i = 0; i < 5; i++) await sbx.commands.run('true');
    const rt = [];
    for (let i = 0; i < N_RUN; i++) { const t0 = performance.now(); await sbx.commands.run('true'); rt.push(performance.now() - t0); }
    results.runTrueRoundTrip = summary(rt);

    // envd idle RSS: the sandbox's PID 1 seen from the host (cmdline /.cube/envd)
    await new Promise((r) => setTimeout(r, 1000));
    const rss = [];
    for (const pid of hostPids()) {
      const cmd = readProc(pid, 'cmdline');
      if (cmd && cmd.startsWith('/.cube/envd')) {
        const m = /VmRSS:\s+(\d+) kB/.exec(readProc(pid, 'status') || '');
        if (m) rss.push(Number(m[1]));
      }
    }
    results.envdIdleRssKiB = rss.length ? summary(rss) : null;
    await sbx.kill();
  } finally {
    await c.stop();
  }
  for (const k of Object.keys(results)) if (results[k] && typeof results[k] === 'object' && 'p50' in results[k]) {
    for (const f of ['p50', 'p95', 'p99', 'min', 'max']) results[k][f] = r2(results[k][f]);
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
}

main().catch((e) => { console.error(e); process.exit(1); });
