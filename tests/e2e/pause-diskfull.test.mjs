// A full disk never costs a sandbox or its files. With the layer store (<state>/layers: snapshots) and the
// pause-to-disk dir (<state>/disk) on 48 MB filesystems of their own, a snapshot, a pause to disk and an
// eviction of a sandbox whose changes (80 MB) do not fit are refused with 507 and the reason, through the
// unmodified SDK and the CLI; nothing half-written stays (no scratch copy, the space is free again); the
// sandbox runs on with its processes and files (or stays paused in memory and resumes where it stopped);
// once the changes fit, the same operations work.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, ctest, loadSdk, api, run, bin, sleep } from './harness.mjs';

const SMALL = ['layers', 'disk'];
const c = useCubed({
  prepare: async (dir) => {
    for (const d of SMALL) {
      fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
      const r = await run('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=700', 'cube-e2e-small', path.join(dir, d)]);
      if (r.code !== 0) throw new Error(`mount tmpfs on ${d}: ${r.stderr}`);
    }
  },
});
// Registered after useCubed's: runs once cubed is stopped (which leaves a state dir with mounts alone).
after(async () => {
  if (!c.stateDir) return;
  for (const d of SMALL) await run('umount', ['-l', path.join(c.stateDir, d)]);
  if (!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(c.stateDir)) fs.rmSync(c.stateDir, { recursive: true, force: true });
});

const SUM = 'cd /home/user && sha256sum big.bin small.txt';
const free = (d) => { const s = fs.statfsSync(path.join(c.stateDir, d)); return s.bavail * s.bsize; };
// Scratch copies start with '.', anywhere below the dir.
const scratch = (d) => fs.readdirSync(path.join(c.stateDir, d), { recursive: true }).filter((n) => /(^|\/)\./.test(n));
const counter = async (sbx) => Number((await sbx.commands.run('cat /tmp/counter')).stdout);

// fn({Sandbox, sbx, want}) on a sandbox with 80 MB of changes and a background counter; killed after.
async function withBigSandbox(fn) {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000 });
  try {
    await sbx.commands.run('head -c 80M /dev/urandom > /home/user/big.bin && echo small > /home/user/small.txt', { timeoutMs: 60_000 });
    await sbx.commands.run('i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done', { background: true, timeoutMs: 0 });
    await sleep(300);
    await fn({ Sandbox, sbx, want: (await sbx.commands.run(SUM)).stdout });
  } finally {
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`).catch(() => null);
  }
}

// Running, not left frozen, its processes and files as before.
async function assertAlive(sbx, want) {
  const a = await counter(sbx);
  let b = a;
  for (let i = 0; i < 50 && b <= a; i++) { // it ticks every 0.1 s: polled, the host may be busy
    await sleep(100);
    b = await counter(sbx);
  }
  assert.ok(b > a, `the background counter moves (${a} → ${b})`);
  assert.equal((await sbx.commands.run(SUM)).stdout, want);
}

function assertNothingLeft(d) {
  assert.deepEqual(scratch(d), [], `scratch left in ${d}`);
  assert.ok(free(d) > 40 << 20, `${d}: only ${free(d) >> 20} MB free again`);
}

ctest(c, 'a snapshot that does not fit: 507 with the reason, nothing half-written, the sandbox runs on; once it fits, it works', { timeout: 120_000 }, () => withBigSandbox(async ({ Sandbox, sbx, want }) => {
  await assert.rejects(sbx.createSnapshot(), /No space left on device/);
  const r = await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/snapshots`, { body: { name: 'too-big' } });
  assert.equal(r.status, 507, r.text);
  assert.equal(r.json.code, 507);
  assert.match(r.json.message, /No space left on device/);
  assert.deepEqual((await api(c, 'GET', `/snapshots?sandboxID=${sbx.sandboxId}`)).json, []);
  assert.equal((await api(c, 'GET', '/templates/too-big')).status, 404, 'no template left behind');
  assertNothingLeft('layers');
  await assertAlive(sbx, want);

  await sbx.commands.run('rm /home/user/big.bin');
  const snap = await sbx.createSnapshot();
  const kid = await Sandbox.create(snap.snapshotId, c.sdkOpts);
  assert.equal(await kid.files.read('/home/user/small.txt'), 'small\n');
  await kid.kill();
  await sbx.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
}));

ctest(c, 'a pause to disk that does not fit: 507, the sandbox keeps running with its processes; once it fits, it works', { timeout: 120_000 }, () => withBigSandbox(async ({ Sandbox, sbx, want }) => {
  await assert.rejects(sbx.pause({ keepMemory: false }), /No space left on device/);
  const r = await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: { memory: false } });
  assert.equal(r.status, 507, r.text);
  assert.match(r.json.message, /No space left on device/);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'running');
  assertNothingLeft('disk');
  await assertAlive(sbx, want);

  await sbx.commands.run('rm /home/user/big.bin');
  assert.equal(await sbx.pause({ keepMemory: false }), true);
  assert.equal((await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`)).json.pausedTo, 'disk');
  await sbx.connect();
  assert.equal(await sbx.files.read('/home/user/small.txt'), 'small\n');
}));

ctest(c, 'an eviction that does not fit: 507 from the CLI, the sandbox stays paused in memory and resumes where it stopped', { timeout: 120_000 }, () => withBigSandbox(async ({ sbx, want }) => {
  assert.equal(await sbx.pause(), true);
  const r = await run(bin.cli, ['--socket', c.socket, 'sandbox', 'evict', sbx.sandboxId], { timeoutMs: 60_000 });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /507.*No space left on device/);
  const info = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`);
  assert.equal(info.json.state, 'paused');
  assert.equal(info.json.pausedTo, 'memory');
  assertNothingLeft('disk');
  await sbx.connect();
  await assertAlive(sbx, want);
}));
