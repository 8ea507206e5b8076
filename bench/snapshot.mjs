// Snapshot time against changed bytes (10 MB and 100 MB written into the sandbox's writable layer), and
// create latency from a snapshot vs. from its base template, against a private cubed with a private
// templates dir (snapshots are written there).
// Usage: node bench/snapshot.mjs [--out bench/snapshot-results.json]   (needs build/ and the test template)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cubed, api, loadSdk, templatesDir } from '../tests/e2e/harness.mjs';

const outPath = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'bench/snapshot-results.json';
const N = Number(process.env.BENCH_N_SNAP || 5);
const N_CREATE = Number(process.env.BENCH_N_CREATE || 30);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r2 = (x) => Math.round(x * 100) / 100;
const summary = (xs) => ({ n: xs.length, p50: r2(pct(xs, 50)), p95: r2(pct(xs, 95)), max: r2(Math.max(...xs)) });

async function createMs(c, templateID) {
  const t0 = performance.now();
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID, timeout: 300 } });
  const ms = performance.now() - t0;
  if (r.status !== 201) throw new Error(`create ${templateID}: ${r.status} ${r.text}`);
  await api(c, 'DELETE', `/sandboxes/${r.json.sandboxID}`);
  return ms;
}

async function main() {
  const tplDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-bench-snap-'));
  fs.symlinkSync(path.join(templatesDir, 'base'), path.join(tplDir, 'base'));
  const c = await new Cubed({ extraArgs: ['--templates-dir', tplDir] }).start();
  const { Sandbox } = await loadSdk('e2b-2.51');
  const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, kernel: os.release() },
    date: new Date().toISOString() };
  try {
    let snapId;
    for (const mb of [10, 100]) {
      const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 600_000 });
      await sbx.commands.run(`head -c ${mb << 20} /dev/urandom > /home/user/blob && sync`, { timeoutMs: 120_000 });
      const times = [];
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const s = await sbx.createSnapshot();
        times.push(performance.now() - t0);
        if (mb === 10 && i === 0) snapId = s.snapshotId;
        else await Sandbox.deleteSnapshot(s.snapshotId, c.sdkOpts);
      }
      results[`snapshot${mb}MB`] = summary(times);
      await sbx.kill();
    }
    for (let i = 0; i < 3; i++) { await createMs(c, 'base'); await createMs(c, snapId); }
    const base = [], snap = [];
    for (let i = 0; i < N_CREATE; i++) { base.push(await createMs(c, 'base')); snap.push(await createMs(c, snapId)); }
    results.createFromBase = summary(base);
    results.createFromSnapshot = summary(snap);
  } finally {
    await c.stop();
    fs.rmSync(tplDir, { recursive: true, force: true });
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
}

main().catch((e) => { console.error(e); process.exit(1); });
