// CRIU process checkpoints when a sandbox paused in memory is evicted to disk (docs/lifecycle.md, "Process
// checkpoints (CRIU)"). `criu check` fails on the machines this runs on, so no real checkpoint is ever made
// here. What is tested: cubed reports CRIU's availability (GET /metrics cube_criu_available, GET /admin/node
// via `cubemastercli node`) with the reason when it is missing or failing; and that every failure of a
// checkpoint or a restore falls back to the tested path: the eviction and the connect still work with every
// file intact, the start command re-run, and the sandbox's log says why the processes were not kept.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useCubed, ctest, run, bin, loadSdk, api, bootMarkerTemplates, waitFor } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-e2e-criu-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// A TEST DOUBLE for the `criu` binary, for the failure paths only: it answers `criu check` like a host where
// CRIU works, so cubed takes the checkpoint path. `dump` fails the way criu reports errors while the file
// dump-fails exists; otherwise it writes a placeholder image set (one file, no process state) so that cubed
// records a checkpoint, and every `restore` then fails. Nothing is ever checkpointed or restored: these
// tests only show that each failure falls back to ending the processes / booting afresh, files intact.
const failingCriu = path.join(tmp, 'criu-test-double');
const dumpFails = path.join(tmp, 'dump-fails');
fs.writeFileSync(failingCriu, `#!/bin/sh
cmd=$1; dir=; log=
case "$cmd" in
--version) echo 'Version: 3.17.1'; exit 0 ;;
check) echo 'Looks good.'; exit 0 ;;
esac
while [ $# -gt 0 ]; do case "$1" in --images-dir) dir=$2 ;; --log-file) log=$2 ;; esac; shift; done
if [ "$cmd" = dump ] && [ ! -e '${dumpFails}' ]; then echo placeholder > "$dir/inventory.img"; exit 0; fi
echo "Error (cube-e2e-test-double): $cmd refused by this test double" > "$dir/$log"
exit 1
`, { mode: 0o755 });

const tplDir = bootMarkerTemplates('criu', 'ckstart');

const missing = path.join(tmp, 'no-such-criu');

const onPath = (name) => (process.env.PATH || '').split(':').some((d) => {
  try { fs.accessSync(path.join(d, name), fs.constants.X_OK); return true; } catch { return false; }
});

const dflt = useCubed({ extraArgs: ['--templates-dir', tplDir, '--evict-paused-after', '1'] });
const absent = useCubed({ extraArgs: ['--criu', missing] });
const double = useCubed({ extraArgs: ['--criu', failingCriu, '--templates-dir', tplDir, '--evict-paused-after', '1'] });

async function criuGauge(c) {
  const r = await fetch(`${c.apiUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.match(text, /^# TYPE cube_criu_available gauge$/m);
  const m = text.match(/^cube_criu_available (\d+)$/m);
  assert.ok(m, 'cube_criu_available sample');
  return Number(m[1]);
}

async function node(c) {
  const r = await run(bin.cli, ['--socket', c.socket, 'node', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const text = await run(bin.cli, ['--socket', c.socket, 'node']);
  assert.equal(text.code, 0, text.stderr);
  return { json: JSON.parse(r.stdout), text: text.stdout };
}

ctest(dflt, 'without criu installed, the node reports CRIU unavailable with the reason', async (t) => {
  if (onPath('criu')) { t.skip('criu is installed on this machine'); return; }
  assert.equal(await criuGauge(dflt), 0);
  const n = await node(dflt);
  assert.equal(n.json.criu.available, false);
  assert.equal(n.json.criu.reason, 'criu not installed');
  assert.match(n.text, /^criu +unavailable: criu not installed$/m);
  assert.match(n.json.version, /^\d+\.\d+/);
});

ctest(absent, '--criu PATH that does not exist: unavailable, and the log says why', async () => {
  assert.equal(await criuGauge(absent), 0);
  const n = await node(absent);
  assert.equal(n.json.criu.available, false);
  assert.equal(n.json.criu.reason, `criu not found at ${missing}`);
  assert.match(fs.readFileSync(absent.logPath, 'utf8'), /criu: unavailable \(criu not found at .*\); evictions to disk keep files only/);
  // /admin/node is on the admin socket only
  const r = await fetch(`${absent.apiUrl}/admin/node`, { headers: { 'X-API-Key': absent.apiKey } });
  assert.equal(r.status, 404);
});

ctest(double, 'a criu whose check passes is reported available', async () => {
  assert.equal(await criuGauge(double), 1);
  const n = await node(double);
  assert.deepEqual(n.json.criu, { available: true, path: failingCriu, version: '3.17.1' });
  assert.match(n.text, /^criu +available \(.*criu-test-double 3\.17\.1\)/m);
});

const { Sandbox } = await loadSdk('e2b-2.51');
const SUM = 'cd / && find home/user -type f | LC_ALL=C sort | xargs -r sha256sum';
const sums = async (sbx) => (await sbx.commands.run(SUM)).stdout;
const bootId = async (sbx) => (await sbx.commands.run('cat /tmp/boot-id')).stdout;
const diskEntries = (id) => { try { return fs.readdirSync(path.join(double.stateDir, 'disk', id)); } catch { return []; } };
const onDisk = (id) => diskEntries(id).some((n) => /^\d+$/.test(n));
const checkpoints = (id) => diskEntries(id).filter((n) => n.startsWith('criu-'));
const logs = async (id) => (await api(double, 'GET', `/sandboxes/${id}/logs`)).text;
const BG = "pgrep -f '^sleep 900$' || true";

// A sandbox with files and a detached background process, paused in memory, then evicted (idle policy).
async function evictedSandbox() {
  const sbx = await Sandbox.create('ckstart', { ...double.sdkOpts, timeoutMs: 120_000 });
  await sbx.commands.run('mkdir -p /home/user/work && head -c 2000000 /dev/urandom > /home/user/work/blob && ' +
    'echo note > /home/user/note && (setsid sleep 900 </dev/null >/dev/null 2>&1 &)');
  const s = { sbx, want: await sums(sbx), boot: await bootId(sbx) };
  assert.equal(await sbx.pause(), true);
  assert.ok(await waitFor(() => onDisk(sbx.sandboxId), 20_000), 'not evicted after the idle time');
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, double.sdkOpts)).state, 'paused');
  return s;
}

async function assertBootedAfresh(s) {
  assert.equal(await sums(s.sbx), s.want, 'files changed across the eviction');
  assert.equal((await s.sbx.commands.run(BG)).stdout, '', 'processes ended (nothing was restored)');
  assert.notEqual(await bootId(s.sbx), s.boot, 'the start command ran again');
}

ctest(double, 'criu dump fails: the eviction keeps the files, the processes end, connect boots afresh', { timeout: 90_000 }, async () => {
  fs.writeFileSync(dumpFails, '');
  let s;
  try {
    s = await evictedSandbox();
    assert.deepEqual(checkpoints(s.sbx.sandboxId), [], 'no checkpoint when the dump failed');
    assert.ok(!diskEntries(s.sbx.sandboxId).some((n) => n.startsWith('.')), 'no scratch dir left');
    assert.match(await logs(s.sbx.sandboxId),
      /processes not checkpointed \(criu dump failed \(exit status 1\): dump refused by this test double\): they end, the files are kept/);
    await s.sbx.connect();
    await assertBootedAfresh(s);
  } finally {
    fs.rmSync(dumpFails, { force: true });
    if (s) await api(double, 'DELETE', `/sandboxes/${s.sbx.sandboxId}`).catch(() => null);
  }
});

ctest(double, 'criu restore fails: connect boots afresh on the saved files; the checkpoint survives a restart of cubed until then, and is removed after', { timeout: 120_000 }, async () => {
  const s = await evictedSandbox();
  const id = s.sbx.sandboxId;
  try {
    const ck = checkpoints(id);
    assert.equal(ck.length, 1, `one checkpoint recorded: ${diskEntries(id)}`);
    assert.ok(fs.existsSync(path.join(double.stateDir, 'disk', id, ck[0], 'inventory.img')));
    // kill -9 of cubed: the checkpoint is named in the stored sandbox and kept at start-up
    await double.kill9();
    await double.restart();
    assert.deepEqual(checkpoints(id), ck);
    assert.equal((await Sandbox.getInfo(id, double.sdkOpts)).state, 'paused');
    await s.sbx.connect();
    await assertBootedAfresh(s);
    assert.match(await logs(id),
      /processes not restored from their checkpoint \(criu restore failed \(exit status 1\): restore refused by this test double\): booted afresh/);
    assert.deepEqual(checkpoints(id), [], 'the checkpoint is removed once the sandbox runs again');
    // a second eviction makes a new checkpoint; killing the sandbox removes it with the saved files
    assert.equal(await s.sbx.pause(), true);
    assert.ok(await waitFor(async () => (await logs(id)).match(/evicted to disk/g)?.length === 2, 20_000), 'not evicted again');
    assert.equal(checkpoints(id).length, 1, 'no new checkpoint');
    assert.equal((await api(double, 'DELETE', `/sandboxes/${id}`)).status, 204);
    assert.ok(await waitFor(() => diskEntries(id).length === 0, 10_000), 'files of a killed sandbox removed');
  } finally {
    await api(double, 'DELETE', `/sandboxes/${id}`).catch(() => null);
  }
});

ctest(double, "connect {memory:false} (onResume 'reboot') drops the checkpoint without trying it", { timeout: 90_000 }, async () => {
  const s = await evictedSandbox();
  const id = s.sbx.sandboxId;
  try {
    assert.equal(checkpoints(id).length, 1);
    const back = await Sandbox.connect(id, { ...double.sdkOpts, onResume: 'reboot' });
    await assertBootedAfresh({ ...s, sbx: back });
    const text = await logs(id);
    assert.match(text, /process checkpoint dropped: connect with memory false boots afresh/);
    assert.doesNotMatch(text, /not restored from their checkpoint/);
    assert.deepEqual(checkpoints(id), []);
  } finally {
    await api(double, 'DELETE', `/sandboxes/${id}`).catch(() => null);
  }
});

ctest(double, 'an explicit pause {memory:false} never checkpoints', { timeout: 90_000 }, async () => {
  const sbx = await Sandbox.create('ckstart', { ...double.sdkOpts, timeoutMs: 120_000 });
  try {
    await sbx.files.write('/home/user/x', 'y');
    assert.equal(await sbx.pause({ keepMemory: false }), true);
    assert.ok(onDisk(sbx.sandboxId));
    assert.deepEqual(checkpoints(sbx.sandboxId), []);
    assert.doesNotMatch(await logs(sbx.sandboxId), /checkpoint/);
    await sbx.connect();
    assert.equal(await sbx.files.read('/home/user/x'), 'y');
  } finally {
    await sbx.kill().catch(() => null);
  }
});

ctest(dflt, 'without CRIU an eviction keeps the files only, and the sandbox log says why', { timeout: 90_000 }, async (t) => {
  if (onPath('criu')) { t.skip('criu is installed on this machine'); return; }
  const sbx = await Sandbox.create('ckstart', { ...dflt.sdkOpts, timeoutMs: 120_000 });
  try {
    await sbx.files.write('/home/user/kept', 'yes');
    const boot = await bootId(sbx);
    assert.equal(await sbx.pause(), true);
    const dir = path.join(dflt.stateDir, 'disk', sbx.sandboxId);
    assert.ok(await waitFor(async () => /evicted to disk/.test((await api(dflt, 'GET', `/sandboxes/${sbx.sandboxId}/logs`)).text), 20_000));
    assert.ok(!fs.readdirSync(dir).some((n) => n.includes('criu')), 'no checkpoint without CRIU');
    assert.match((await api(dflt, 'GET', `/sandboxes/${sbx.sandboxId}/logs`)).text,
      /processes not checkpointed: CRIU is unavailable on this node \(criu not installed\)/);
    await sbx.connect();
    assert.equal(await sbx.files.read('/home/user/kept'), 'yes');
    assert.notEqual(await bootId(sbx), boot);
  } finally {
    await sbx.kill().catch(() => null);
  }
});
