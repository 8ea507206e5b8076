// A chain of snapshots of snapshots (fork of a fork, a tree search): each generation creates a sandbox
// from the previous snapshot, writes 1 MB of its own, snapshots it and is killed. Timed: every snapshot
// (POST /sandboxes/{id}/snapshots until 201) and create from the previous one; reported: the stacked
// snapshots' median, the flattening one(s) (the first snapshot whose template.json has fewer layers than
// its parent's), and the bytes the flattened layer holds against the base image's rootfs. Against a
// private cubed with a private templates dir; run it with another CUBE_BUILD_DIR to compare builds.
//
// Usage: node bench/snapshot-chain.mjs [--out bench/snapshot-chain-results.json] [--generations 52] [--chains 3]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cubed, api, buildDir, run, templatesDir } from '../tests/e2e/harness.mjs';
import { arg, createSandbox, machine, r2, sh, summary } from './lib.mjs';

const outPath = arg('--out', 'bench/snapshot-chain-results.json');
const GENERATIONS = Number(arg('--generations', 52));
const CHAINS = Number(arg('--chains', 3));

const timed = async (fn) => { const t0 = performance.now(); const v = await fn(); return [performance.now() - t0, v]; };
const du = async (dir) => Number((await run('du', ['-sb', dir], { timeoutMs: 120_000 })).stdout.split(/\s/)[0]);

const tplDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-bench-chain-'));
fs.symlinkSync(path.join(templatesDir, 'base'), path.join(tplDir, 'base'));
const c = new Cubed({ extraArgs: ['--templates-dir', tplDir] });
await c.start();
const layersOf = (id) => JSON.parse(fs.readFileSync(path.join(tplDir, id, 'template.json'), 'utf8')).layers;
const rows = [];
try {
  for (let chain = 1; chain <= CHAINS; chain++) {
  let tpl = 'base', prevLayers = 1;
  for (let g = 1; g <= GENERATIONS; g++) {
    const [createMs, sbx] = await timed(() => createSandbox(c, { templateID: tpl, timeout: 300 }));
    await sh(c, sbx, `head -c 1M /dev/urandom > /home/user/g${g}`);
    const [snapMs, r] = await timed(() => api(c, 'POST', `/sandboxes/${sbx.sandboxID}/snapshots`, { body: {}, timeoutMs: 300_000 }));
    if (r.status !== 201) throw new Error(`generation ${g}: snapshot ${r.status} ${r.text}`);
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxID}`);
    tpl = r.json.snapshotID;
    const layers = layersOf(tpl);
    const flattened = layers.length < prevLayers;
    const row = { chain, generation: g, snapshotMs: r2(snapMs), createMs: r2(createMs), layers: layers.length, flattened };
    if (flattened) row.flattenedLayerBytes = await du(path.join(c.stateDir, 'layers', layers[0], 'rootfs'));
    rows.push(row);
    prevLayers = layers.length;
  }
  }
} finally {
  await c.stop();
  fs.rmSync(tplDir, { recursive: true, force: true });
}
const flat = rows.filter((r) => r.flattened);
const result = {
  when: new Date().toISOString(), build: buildDir, machine: await machine(), generations: GENERATIONS, chains: CHAINS,
  baseRootfsBytes: await du(path.join(templatesDir, 'base', 'rootfs')),
  stackedSnapshotMs: summary(rows.filter((r) => !r.flattened).map((r) => r.snapshotMs)),
  createMs: summary(rows.map((r) => r.createMs)),
  flatteningMs: summary(flat.map((r) => r.snapshotMs)),
  flattenings: flat, rows,
};
fs.writeFileSync(outPath, JSON.stringify(result, null, 2) + '\n');
console.log(`${CHAINS} snapshot chains of ${GENERATIONS} (build ${buildDir})`);
console.log(`  stacked snapshots p50 ${result.stackedSnapshotMs.p50} ms; create p50 ${result.createMs.p50} ms`);
for (const f of flat) {
  console.log(`  chain ${f.chain}: flattening at generation ${f.generation}: ${f.snapshotMs} ms, ${(f.flattenedLayerBytes / 2 ** 20).toFixed(1)} MB ` +
    `in its layer (base rootfs ${(result.baseRootfsBytes / 2 ** 20).toFixed(1)} MB), ${f.layers} layers after`);
}
