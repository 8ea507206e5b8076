// Code-interpreter benchmarks with the unmodified @e2b/code-interpreter SDK against a private cubed:
//   create of a code-interpreter sandbox (returns once cube-interp answers, with a warm python kernel),
//   first runCode after create, runCode('1+1') round trip, createCodeContext (python) until usable.
// Usage: node bench/interp.mjs [--out bench/interp-results.json]   (needs build/ and the code-interpreter
// template in the test templates dir: scripts/build-code-interpreter-template.sh /var/lib/cubesandbox-test/templates)
import fs from 'node:fs';
import os from 'node:os';
import { Cubed, api, loadSdk } from '../tests/e2e/harness.mjs';

// resolved from tests/e2e/node_modules (npm ci there)
const { Sandbox } = await loadSdk('@e2b/code-interpreter');

const outPath = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'bench/interp-results.json';
const N_CREATE = Number(process.env.BENCH_N_CREATE || 8);
const N_RUN = Number(process.env.BENCH_N_RUN || 200);
const N_CTX = Number(process.env.BENCH_N_CTX || 8);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r2 = (x) => Math.round(x * 100) / 100;
const summary = (xs) => ({ n: xs.length, p50: r2(pct(xs, 50)), p95: r2(pct(xs, 95)), min: r2(Math.min(...xs)), max: r2(Math.max(...xs)) });

async function main() {
  const c = await new Cubed().start();
  const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: r2(os.totalmem() / 2 ** 30) }, date: new Date().toISOString() };
  try {
    const create = [], first = [];
    for (let i = 0; i < N_CREATE; i++) {
      const t0 = performance.now();
      const sbx = await Sandbox.create('code-interpreter', c.sdkOpts);
      const t1 = performance.now();
      const e = await sbx.runCode('1+1');
      const t2 = performance.now();
      if (e.text !== '2') throw new Error(`unexpected result ${JSON.stringify(e.toJSON())}`);
      create.push(t1 - t0);
      first.push(t2 - t1);
      await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`);
    }
    results.createUntilReady = summary(create);
    results.firstRunCodeAfterCreate = summary(first);
    results.createToFirstResult = summary(create.map((x, i) => x + first[i]));

    const sbx = await Sandbox.create('code-interpreter', { ...c.sdkOpts, timeoutMs: 600_000 });
    for (let i = 0; i < 10; i++) await sbx.runCode('1+1');
    const run = [];
    for (let i = 0; i < N_RUN; i++) {
      const t0 = performance.now();
      const e = await sbx.runCode('1+1');
      run.push(performance.now() - t0);
      if (e.text !== '2') throw new Error('bad result');
    }
    results.runCodeRoundTrip = summary(run);
    const jsRun = [];
    for (let i = 0; i < N_RUN / 2; i++) {
      const t0 = performance.now();
      await sbx.runCode('1+1', { language: 'js' });
      jsRun.push(performance.now() - t0);
    }
    results.runCodeRoundTripJs = summary(jsRun);

    const ctx = [];
    for (let i = 0; i < N_CTX; i++) {
      const t0 = performance.now();
      const cc = await sbx.createCodeContext();
      const e = await sbx.runCode('1+1', { context: cc });
      ctx.push(performance.now() - t0);
      if (e.text !== '2') throw new Error('bad result in new context');
      await sbx.removeCodeContext(cc);
    }
    results.pythonContextCreateToFirstResult = summary(ctx);
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`);
  } finally {
    await c.stop();
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
}

main().catch((e) => { console.error(e); process.exit(1); });
