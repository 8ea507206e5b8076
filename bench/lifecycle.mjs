// What a sandbox's changed bytes cost: snapshot, pause to disk, connect (boot) from disk, create from a
// snapshot, rollback, fork of 10 and (when cubed has it) policy eviction of a memory-paused sandbox to
// disk, for 0 MB (the fixed part), 10 MB, 100 MB and 1 GB of random bytes written into the sandbox's
// writable layer, against a private cubed with a private templates dir (snapshots are written there);
// plus the host's own copy, fsync and tmpfs-free times for the same bytes.
// Every operation is checked: the blob's CRC (cksum) is compared after each connect, rollback, create and
// fork, so what is timed is a correct operation.
//
// The writable layer is a host tmpfs sized by the template's diskSizeMB and charged to its memoryMB, so
// the benchmark uses its own template: the test template `base` with more room (BENCH_TPL_MB, 2048 MB of
// memory and of disk), written as template.json next to a link to `base`.
//
// Usage: node bench/lifecycle.mjs [--out bench/lifecycle-results.json]   (needs build/ and the test template)
//        node bench/lifecycle.mjs --tables [bench/lifecycle-results.json]   (docs/benchmarks.md's tables)
// Environment: BENCH_SIZES_MB (0,10,100,1024), BENCH_N_LC (10 per size), BENCH_N_LC_BIG (5 for sizes ≥ 1 GB),
//              BENCH_N_CREATE (30), BENCH_FORK (10 children), BENCH_N_FORK (5 forks per size),
//              BENCH_N_FORK_BIG (3 for sizes ≥ 1 GB), BENCH_N_EVICT (5; BENCH_N_EVICT_BIG 3), BENCH_TPL_MB (2048).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cubed, api, bin, run, templatesDir, waitFor } from '../tests/e2e/harness.mjs';
import { arg, createSandbox, logTimes, machine, pct, printRows, r2, sh, summary } from './lib.mjs';

const outPath = arg('--out', 'bench/lifecycle-results.json');
const SIZES_MB = (process.env.BENCH_SIZES_MB || '0,10,100,1024').split(',').map(Number);
const N = Number(process.env.BENCH_N_LC || 10);
const N_BIG = Number(process.env.BENCH_N_LC_BIG || 5);
const N_CREATE = Number(process.env.BENCH_N_CREATE || 30);
const FORK = Number(process.env.BENCH_FORK || 10);
const N_FORK = Number(process.env.BENCH_N_FORK || 5);
const N_FORK_BIG = Number(process.env.BENCH_N_FORK_BIG || 3);
const TPL_MB = Number(process.env.BENCH_TPL_MB || 2048);
const TPL = 'bench-lifecycle';
const BLOB = '/home/user/blob';
const N_EVICT = Number(process.env.BENCH_N_EVICT || 5);
const N_EVICT_BIG = Number(process.env.BENCH_N_EVICT_BIG || 3);
const iterations = (mb) => (mb >= 1024 ? N_BIG : N);
const evictIterations = (mb) => (mb >= 1024 ? N_EVICT_BIG : N_EVICT);

const timed = async (fn) => { const t0 = performance.now(); const v = await fn(); return [performance.now() - t0, v]; };

async function call(c, method, p, body, want) {
  const r = await api(c, method, p, { body, timeoutMs: 300_000 });
  if (r.status !== want) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
  return r.json;
}

// Fresh random bytes in the blob (incompressible; the old blob is removed first so the writable layer
// holds exactly `mb` MB of it); returns its CRC and length as cksum prints them.
const writeBlob = async (c, sbx, mb) =>
  (await sh(c, sbx, `rm -f ${BLOB} && head -c ${mb * 1048576} /dev/urandom > ${BLOB} && cksum < ${BLOB}`)).stdout.trim();

async function checkBlob(c, sbx, want, what) {
  const got = (await sh(c, sbx, `cksum < ${BLOB}`)).stdout.trim();
  if (got !== want) throw new Error(`${what}: blob of ${sbx.sandboxID} is "${got}", want "${want}"`);
}

// The bounds below cubed, for `mb` MB of random bytes in a tmpfs (like the writable layer): a copy to a
// file on the state dir's filesystem (copy_file_range, like the layer copy) and its fsync, timed apart; the
// same copy to the tmpfs itself (memory only); and the umount that frees the tmpfs (what ending a sandbox
// does with its writable layer).
async function hostCopy(stateDir, mb, n) {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-bench-tmpfs-'));
  const src = path.join(mnt, 'src'), mem = path.join(mnt, 'copy'), dst = path.join(stateDir, `copy-${process.pid}`);
  const copy = [], sync = [], toTmpfs = [];
  let umountMs = null;
  const m = await run('mount', ['-t', 'tmpfs', '-o', `size=${2 * mb + 16}m`, 'tmpfs', mnt]);
  if (m.code !== 0) {
    fs.rmdirSync(mnt);
    throw new Error(`mount tmpfs: ${m.stderr}`);
  }
  try {
    const fd = fs.openSync(src, 'w');
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < mb; i++) { crypto.randomFillSync(chunk); fs.writeSync(fd, chunk); }
    fs.closeSync(fd);
    for (let i = 0; i < n; i++) {
      fs.rmSync(dst, { force: true });
      fs.rmSync(mem, { force: true });
      let t0 = performance.now();
      fs.copyFileSync(src, dst);
      copy.push(performance.now() - t0);
      t0 = performance.now();
      const d = fs.openSync(dst, 'r');
      fs.fsyncSync(d);
      fs.closeSync(d);
      sync.push(performance.now() - t0);
      t0 = performance.now();
      fs.copyFileSync(src, mem);
      toTmpfs.push(performance.now() - t0);
    }
  } finally {
    fs.rmSync(dst, { force: true });
    const t0 = performance.now();
    const u = await run('umount', [mnt]);
    umountMs = r2(performance.now() - t0); // includes starting umount(8), about 1 ms
    if (u.code === 0) fs.rmdirSync(mnt);
  }
  const total = copy.map((x, i) => x + sync[i]);
  return { copyMs: summary(copy), fsyncMs: summary(sync), totalMs: summary(total),
    mbPerS: mb ? r2(mb / (summary(total).p50 / 1000)) : null, copyToTmpfsMs: summary(toTmpfs), umountMs };
}

// Every snapshot of one sandbox ('' = all), with the sandboxes still using them.
async function deleteSnapshotsOf(c, sandboxID) {
  const list = await call(c, 'GET', `/snapshots?limit=100${sandboxID ? `&sandboxID=${sandboxID}` : ''}`, undefined, 200);
  for (const s of list) await call(c, 'DELETE', `/templates/${s.snapshotID}?force=true`, undefined, 204);
}

async function bySize(c, mb) {
  const n = iterations(mb), out = { iterations: n };
  const snapRe = /snapshot \S+ taken in (\d+) ms/;

  // Snapshot, then pause to disk, then connect, of the same bytes in a fresh sandbox each time (a
  // snapshot after a pause to disk would copy the saved layers too, and fresh sandboxes keep the pairs
  // comparable). Snapshot: freeze, copy the writable layer into the layer store with fsync, publish,
  // thaw. Pause to disk: 204 once the copy is durable and the processes have ended. Connect: 201 once
  // envd answers again, booted on the saved layer. The first snapshot is kept for the steps below.
  const snap = [], snapCubed = [], pause = [], pauseCubed = [], connect = [], ratio = [];
  let keep, sum;
  for (let i = 0; i < n; i++) {
    const sbx = await createSandbox(c, { templateID: TPL });
    try {
      const s = await writeBlob(c, sbx, mb);
      const [sms, sn] = await timed(() => call(c, 'POST', `/sandboxes/${sbx.sandboxID}/snapshots`, {}, 201));
      const [pms] = await timed(() => call(c, 'POST', `/sandboxes/${sbx.sandboxID}/pause`, { memory: false }, 204));
      const [cms] = await timed(() => call(c, 'POST', `/v2/sandboxes/${sbx.sandboxID}/connect`, { timeout: 600 }, 201));
      await checkBlob(c, sbx, s, 'connect from disk');
      snap.push(sms);
      pause.push(pms);
      connect.push(cms);
      ratio.push(pms / sms);
      snapCubed.push((await logTimes(c, sbx.sandboxID, snapRe))[0]);
      pauseCubed.push((await logTimes(c, sbx.sandboxID, /paused to disk in (\d+) ms/))[0]);
      if (!keep) [keep, sum] = [sn.snapshotID, s];
      else await call(c, 'DELETE', `/templates/${sn.snapshotID}`, undefined, 204);
    } finally {
      await api(c, 'DELETE', `/sandboxes/${sbx.sandboxID}`).catch(() => null);
    }
  }
  Object.assign(out, { snapshotMs: summary(snap), snapshotInCubedMs: summary(snapCubed), pauseToDiskMs: summary(pause),
    pauseToDiskInCubedMs: summary(pauseCubed), connectFromDiskMs: summary(connect) });
  out.snapshotMBps = mb ? r2(mb / (out.snapshotMs.p50 / 1000)) : null;
  out.pauseToDiskMBps = mb ? r2(mb / (out.pauseToDiskMs.p50 / 1000)) : null;
  out.pauseToDiskOverSnapshot = r2(pct(ratio, 50)); // median of the per-sandbox ratios
  out.snapshotId = keep;

  // Create from that snapshot (API round trip to 201), each checked.
  const create = [];
  for (let i = 0; i < n; i++) {
    const [ms, sbx] = await timed(() => createSandbox(c, { templateID: keep }));
    create.push(ms);
    await checkBlob(c, sbx, sum, 'create from snapshot');
    await call(c, 'DELETE', `/sandboxes/${sbx.sandboxID}`, undefined, 204);
  }
  out.createFromSnapshotMs = summary(create);

  const src = await createSandbox(c, { templateID: TPL });
  try {
    // Fork: from the request until every child answers a command (envd Process/Start of `true`); each
    // fork copies the writable layer once (its snapshot), then starts the children from it.
    const fsum = await writeBlob(c, src, mb);
    const forkResp = [], forkAll = [], forkSnap = [], perChild = [];
    for (let i = 0; i < (mb >= 1024 ? N_FORK_BIG : N_FORK); i++) {
      const t0 = performance.now();
      const res = await call(c, 'POST', `/sandboxes/${src.sandboxID}/fork`, { count: FORK, timeout: 600 }, 201);
      const tResp = performance.now() - t0;
      const kids = res.map((r) => { if (!r.sandbox) throw new Error(`fork: ${JSON.stringify(r.error)}`); return r.sandbox; });
      await Promise.all(kids.map((k) => sh(c, k, 'true')));
      const tAll = performance.now() - t0;
      const snapMs = (await logTimes(c, src.sandboxID, snapRe)).at(-1);
      forkResp.push(tResp);
      forkAll.push(tAll);
      forkSnap.push(snapMs);
      perChild.push((tResp - snapMs) / FORK);
      for (const k of kids) await checkBlob(c, k, fsum, 'fork');
      await Promise.all(kids.map((k) => call(c, 'DELETE', `/sandboxes/${k.sandboxID}`, undefined, 204)));
    }
    out.fork = { children: FORK, untilAllAnswerMs: summary(forkAll), responseMs: summary(forkResp),
      snapshotPartMs: summary(forkSnap), perChildCreateMs: summary(perChild) };

    // Rollback of a running sandbox of the same template to the kept snapshot, after a file was added.
    const rollback = [];
    for (let i = 0; i < n; i++) {
      await sh(c, src, `echo later > /home/user/later`);
      const [ms] = await timed(() => call(c, 'POST', `/sandboxes/${src.sandboxID}/rollback`, { snapshotID: keep }, 200));
      rollback.push(ms);
      await checkBlob(c, src, sum, 'rollback');
      await sh(c, src, 'test ! -e /home/user/later');
    }
    out.rollbackMs = summary(rollback);
    return out;
  } finally {
    await api(c, 'DELETE', `/sandboxes/${src.sandboxID}`).catch(() => null);
  }
}

// Create from the template vs. from a snapshot of it (10 MB changed), alternating.
async function createCompare(c) {
  const src = await createSandbox(c, { templateID: TPL });
  const sum = await writeBlob(c, src, 10);
  const { snapshotID } = await call(c, 'POST', `/sandboxes/${src.sandboxID}/snapshots`, {}, 201);
  await call(c, 'DELETE', `/sandboxes/${src.sandboxID}`, undefined, 204);
  const once = async (templateID) => {
    const [ms, sbx] = await timed(() => createSandbox(c, { templateID }));
    if (templateID === snapshotID) await checkBlob(c, sbx, sum, 'create from snapshot');
    await call(c, 'DELETE', `/sandboxes/${sbx.sandboxID}`, undefined, 204);
    return ms;
  };
  for (let i = 0; i < 3; i++) { await once(TPL); await once(snapshotID); }
  const tpl = [], snap = [];
  for (let i = 0; i < N_CREATE; i++) { tpl.push(await once(TPL)); snap.push(await once(snapshotID)); }
  await deleteSnapshotsOf(c, src.sandboxID);
  return { createFromTemplateMs: summary(tpl), createFromSnapshotMs: summary(snap) };
}

// Eviction of a sandbox paused in memory to disk (docs/lifecycle.md, "Eviction"), when this cubed has it:
// `mb` MB changed, paused in memory, then moved to disk (a) by the idle policy (--evict-paused-after 1;
// the time is cubed's own, from the sandbox's log: freeze already done, copy, fsync, processes ended) and
// (b) by a create on a full node (--max-sandboxes 1: the create waits for the eviction and takes the slot;
// timed as the client sees the create); after each, connect boots it from disk and its blob is checked.
async function evictBench(tplDir) {
  const help = await run(bin.cubed, ['--help']);
  if (!/--evict-paused-after/.test(help.stdout + help.stderr)) return null;
  const evicted = /evicted to disk \([^)]*\) in (\d+) ms/;
  const out = {};
  const idle = await new Cubed({ extraArgs: ['--templates-dir', tplDir, '--evict-paused-after', '1'] }).start();
  try {
    for (const mb of SIZES_MB) {
      process.stderr.write(`[lifecycle] eviction after 1 s paused, ${mb} MB\n`);
      const ev = [], conn = [];
      for (let i = 0; i < evictIterations(mb); i++) {
        const sbx = await createSandbox(idle, { templateID: TPL });
        const sum = await writeBlob(idle, sbx, mb);
        await call(idle, 'POST', `/sandboxes/${sbx.sandboxID}/pause`, {}, 204);
        const done = await waitFor(async () => (await logTimes(idle, sbx.sandboxID, evicted)).map((ms) => ({ ms }))[0], 120_000, 20);
        if (!done) throw new Error(`${sbx.sandboxID} was not evicted within 120 s`);
        ev.push(done.ms);
        const [cms] = await timed(() => call(idle, 'POST', `/v2/sandboxes/${sbx.sandboxID}/connect`, { timeout: 600 }, 201));
        conn.push(cms);
        await checkBlob(idle, sbx, sum, 'connect after eviction');
        await call(idle, 'DELETE', `/sandboxes/${sbx.sandboxID}`, undefined, 204);
      }
      out[mb] = { idleEvictInCubedMs: summary(ev), connectAfterEvictMs: summary(conn) };
    }
  } finally {
    await idle.stop();
  }
  const full = await new Cubed({ extraArgs: ['--templates-dir', tplDir, '--max-sandboxes', '1'] }).start();
  try {
    for (const mb of SIZES_MB) {
      process.stderr.write(`[lifecycle] eviction by a create on a full node, ${mb} MB\n`);
      const create = [], ev = [];
      for (let i = 0; i < evictIterations(mb); i++) {
        const a = await createSandbox(full, { templateID: TPL });
        const sum = await writeBlob(full, a, mb);
        await call(full, 'POST', `/sandboxes/${a.sandboxID}/pause`, {}, 204);
        const [ms, b] = await timed(() => createSandbox(full, { templateID: TPL }));
        create.push(ms);
        ev.push((await logTimes(full, a.sandboxID, evicted))[0]);
        await call(full, 'DELETE', `/sandboxes/${b.sandboxID}`, undefined, 204);
        // The slot comes back once b is gone; connect boots a from disk.
        const r = await waitFor(async () => {
          const x = await api(full, 'POST', `/v2/sandboxes/${a.sandboxID}/connect`, { body: { timeout: 600 }, timeoutMs: 300_000 });
          return x.status === 429 ? null : x;
        }, 10_000, 20);
        if (r?.status !== 201) throw new Error(`connect after eviction: ${r?.status} ${r?.text}`);
        await checkBlob(full, a, sum, 'connect after eviction by a create');
        await call(full, 'DELETE', `/sandboxes/${a.sandboxID}`, undefined, 204);
      }
      Object.assign(out[mb], { createOnFullNodeMs: summary(create), fullNodeEvictInCubedMs: summary(ev) });
    }
  } finally {
    await full.stop();
  }
  return out;
}

async function main() {
  if (!fs.existsSync(path.join(templatesDir, 'base', 'template.json'))) {
    throw new Error(`no test template in ${templatesDir}/base: run bash scripts/build-base-template.sh ${templatesDir}`);
  }
  const tplDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-bench-lc-'));
  fs.symlinkSync(path.join(templatesDir, 'base'), path.join(tplDir, 'base'));
  const template = { name: TPL, cpuCount: 2, memoryMB: TPL_MB, diskSizeMB: TPL_MB, envs: {}, layers: ['template/base'] };
  fs.mkdirSync(path.join(tplDir, TPL));
  fs.writeFileSync(path.join(tplDir, TPL, 'template.json'), JSON.stringify(template));
  const c = await new Cubed({ extraArgs: ['--templates-dir', tplDir] }).start();
  const results = { machine: await machine(c.stateDir), date: new Date().toISOString(), template, sizes: {}, hostCopy: {} };
  try {
    for (const mb of SIZES_MB) {
      process.stderr.write(`[lifecycle] ${mb} MB\n`);
      results.hostCopy[mb] = await hostCopy(c.stateDir, mb, iterations(mb));
      results.sizes[mb] = await bySize(c, mb);
      await deleteSnapshotsOf(c, '');
    }
    process.stderr.write('[lifecycle] create from template vs. from snapshot\n');
    results.create = await createCompare(c);
    const base = results.create.createFromTemplateMs.p50;
    for (const mb of SIZES_MB) results.sizes[mb].connectFromDiskOverCreate = r2(results.sizes[mb].connectFromDiskMs.p50 / base);
    results.create.snapshotOverTemplate = r2(results.create.createFromSnapshotMs.p50 / base);
  } finally {
    await c.stop();
  }
  try { // a failure here (e.g. a changed log line) must not cost the results above
    results.evict = await evictBench(tplDir).catch((e) => ({ error: String(e?.message ?? e) }));
  } finally {
    results.loadavgEnd = os.loadavg().map(r2);
    fs.rmSync(tplDir, { recursive: true, force: true });
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');

  const rows = [];
  for (const mb of SIZES_MB) {
    const s = results.sizes[mb], h = results.hostCopy[mb], rate = (x) => (x === null ? '' : `${x} MB/s`);
    rows.push([`${mb} MB: snapshot`, s.snapshotMs, rate(s.snapshotMBps)],
      [`${mb} MB: pause to disk`, s.pauseToDiskMs, `${rate(s.pauseToDiskMBps)} ${s.pauseToDiskOverSnapshot}x snapshot`],
      [`${mb} MB: connect from disk`, s.connectFromDiskMs, `${s.connectFromDiskOverCreate}x create`],
      [`${mb} MB: create from snapshot`, s.createFromSnapshotMs],
      [`${mb} MB: rollback`, s.rollbackMs],
      [`${mb} MB: fork of ${FORK}, all answer`, s.fork.untilAllAnswerMs, `per child ${s.fork.perChildCreateMs.p50} ms`],
      [`${mb} MB: host copy + fsync`, h.totalMs, `${rate(h.mbPerS)} (copy ${h.copyMs.p50}, fsync ${h.fsyncMs.p50}; ` +
        `to tmpfs ${h.copyToTmpfsMs.p50}, umount ${h.umountMs})`]);
  }
  for (const mb of results.evict && !results.evict.error ? SIZES_MB : []) {
    const e = results.evict[mb];
    rows.push([`${mb} MB: evict after 1 s paused (cubed)`, e.idleEvictInCubedMs],
      [`${mb} MB: connect after eviction`, e.connectAfterEvictMs],
      [`${mb} MB: create on a full node (evicts)`, e.createOnFullNodeMs, `eviction in cubed ${e.fullNodeEvictInCubedMs.p50} ms`]);
  }
  if (!results.evict) rows.push(['eviction', 'not measured: this cubed has no --evict-paused-after']);
  else if (results.evict.error) rows.push(['eviction', `failed: ${results.evict.error}`]);
  rows.push(['create from template', results.create.createFromTemplateMs],
    ['create from snapshot (10 MB)', results.create.createFromSnapshotMs, `${results.create.snapshotOverTemplate}x`]);
  printRows(`lifecycle, ${outPath} (load ${results.machine.loadavg.join(' ')} → ${results.loadavgEnd.join(' ')})`, rows);
}

// The tables of docs/benchmarks.md from a results file: `node bench/lifecycle.mjs --tables [FILE]`.
function tables(r) {
  const ms = (x) => (x >= 100 ? String(Math.round(x)) : x.toFixed(1));
  const pp = (s) => `${ms(s.p50)} / ${ms(s.p95)} ms`;
  const size = (mb) => (mb >= 1024 ? `${mb / 1024} GB` : mb ? `${mb} MB` : '0');
  const sizes = Object.keys(r.sizes).map(Number).sort((a, b) => a - b);
  const out = [`Run ${r.date}, load ${r.machine.loadavg.join(' ')} → ${r.loadavgEnd.join(' ')}, state dir: ${r.machine.stateDirFs.split(' ').slice(0, 2).join(' on ')}`, '',
    '| Changed bytes | snapshot p50 / p95 | pause to disk p50 / p95 | connect from disk p50 / p95 | create from snapshot p50 / p95 | rollback p50 / p95 | fork of 10, all answer p50 / p95 (per child) |',
    '|---|---|---|---|---|---|---|'];
  for (const mb of sizes) {
    const s = r.sizes[mb];
    out.push(`| ${size(mb)} | ${pp(s.snapshotMs)} | ${pp(s.pauseToDiskMs)} | ${pp(s.connectFromDiskMs)} | ${pp(s.createFromSnapshotMs)} | ` +
      `${pp(s.rollbackMs)} | ${pp(s.fork.untilAllAnswerMs)} (${ms(s.fork.perChildCreateMs.p50)} ms) |`);
  }
  out.push('', '| Changed bytes | snapshot rate | pause to disk rate, ÷ snapshot | host: copy to the state dir + fsync | host: copy within tmpfs | host: free the tmpfs (umount) |',
    '|---|---|---|---|---|---|');
  for (const mb of sizes.filter((x) => x > 0)) {
    const s = r.sizes[mb], h = r.hostCopy[mb];
    out.push(`| ${size(mb)} | ${Math.round(s.snapshotMBps)} MB/s | ${Math.round(s.pauseToDiskMBps)} MB/s, ${s.pauseToDiskOverSnapshot}× | ` +
      `${ms(h.totalMs.p50)} ms (${ms(h.copyMs.p50)} + ${ms(h.fsyncMs.p50)}), ${Math.round(h.mbPerS)} MB/s | ${ms(h.copyToTmpfsMs.p50)} ms | ${ms(h.umountMs)} ms |`);
  }
  out.push('', '| Create (alternating) | p50 | p95 |', '|---|---|---|',
    `| from the benchmark template (\`base\` + limits) | ${ms(r.create.createFromTemplateMs.p50)} ms | ${ms(r.create.createFromTemplateMs.p95)} ms |`,
    `| from a snapshot of it (one more read-only layer, 10 MB) | ${ms(r.create.createFromSnapshotMs.p50)} ms (${r.create.snapshotOverTemplate}×) | ${ms(r.create.createFromSnapshotMs.p95)} ms |`);
  if (r.evict && !r.evict.error) {
    out.push('', '| Changed bytes | eviction after 1 s paused (in cubed) p50 / p95 | connect after eviction p50 / p95 | create on a full node, evicting p50 / p95 (eviction in cubed) |',
      '|---|---|---|---|');
    for (const mb of sizes) {
      const e = r.evict[mb];
      out.push(`| ${size(mb)} | ${pp(e.idleEvictInCubedMs)} | ${pp(e.connectAfterEvictMs)} | ${pp(e.createOnFullNodeMs)} (${ms(e.fullNodeEvictInCubedMs.p50)} ms) |`);
    }
  }
  return out.join('\n');
}

if (process.argv.includes('--tables')) {
  const f = process.argv[process.argv.indexOf('--tables') + 1] || 'bench/lifecycle-results.json';
  console.log(tables(JSON.parse(fs.readFileSync(f, 'utf8'))));
} else {
  main().catch((e) => { console.error(e); process.exit(1); });
}
