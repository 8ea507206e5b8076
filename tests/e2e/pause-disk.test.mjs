// Pause to disk with the unmodified SDK (sbx.pause({keepMemory: false}), then connect): the files are
// saved durably and the processes end; connect boots the sandbox again with every file intact, the same
// id and token, and the template's start command re-run. Five cycles; kill -9 of cubed while paused to
// disk (with the sandbox's processes long gone), restart, connect works; kill removes the saved layers;
// snapshots include the saved layers, a rollback replaces them; kill -9 of cubed in the middle of a pause
// to disk leaves the running or the paused sandbox, never a half copy, and the pause can be retried.
// The CLI: sandbox pause --to-disk, resume.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, forEachSdk, ctest, loadSdk, api, bootMarkerTemplates, hostPids, waitFor, run, bin } from './harness.mjs';

const tplDir = bootMarkerTemplates('pausedisk', 'pdstart');
const c = useCubed({ extraArgs: ['--templates-dir', tplDir] });

const SUM = 'cd / && find home/user opt/pd tmp -type f ! -path tmp/boot-id 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum; ' +
  'test -e /etc/motd && echo motd || echo no-motd';
const sums = async (sbx) => (await sbx.commands.run(SUM, { user: 'root' })).stdout;
const diskDir = (id) => path.join(c.stateDir, 'disk', id);

forEachSdk(c, 'five pause-to-disk → connect cycles keep every file; processes end; start command re-runs', { timeout: 180_000 }, async ({ create, Sandbox }) => {
  const sbx = await create('pdstart', { timeoutMs: 120_000, envs: { PD: 'env kept' } });
  await sbx.commands.run('mkdir -p /opt/pd && echo one > /opt/pd/f && rm -f /etc/motd', { user: 'root' });
  let boot = (await sbx.commands.run('cat /tmp/boot-id')).stdout;
  for (let i = 1; i <= 5; i++) {
    // Each cycle changes, adds and deletes something, so every saved layer matters.
    const blob = crypto.randomBytes((1 << 20) + i);
    await sbx.files.write(`/home/user/blob${i}.bin`, blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
    await sbx.commands.run(`echo ${i} >> /opt/pd/f && rm -f /home/user/blob${i - 1}.bin && echo ${i} > /tmp/cycle${i}`, { user: 'root' });
    const before = await sums(sbx);
    const bg = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 });

    assert.equal(await sbx.pause({ keepMemory: false }), true, `cycle ${i}: pause`);
    const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
    assert.equal(info.state, 'paused');
    assert.ok(fs.readdirSync(diskDir(sbx.sandboxId)).length >= 1, 'saved layer on disk');
    assert.equal(await sbx.pause({ keepMemory: false }), false, 'already paused → false');

    await sbx.connect();
    assert.equal(await sums(sbx), before, `cycle ${i}: files differ after connect`);
    assert.equal((await sbx.commands.run('echo $PD')).stdout, 'env kept\n');
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === bg.pid), 'processes end with a pause to disk');
    const b2 = (await sbx.commands.run('cat /tmp/boot-id')).stdout;
    assert.match(b2, /^[0-9a-f-]{36}\n$/);
    assert.notEqual(b2, boot, `cycle ${i}: the start command ran again`);
    boot = b2;
  }
  assert.equal((await sbx.commands.run('cat /opt/pd/f')).stdout, 'one\n1\n2\n3\n4\n5\n');
  // A snapshot includes the saved layers: a sandbox from it has the same files; a rollback to it works.
  const final = await sums(sbx);
  const snap = await sbx.createSnapshot();
  const kid = await create(snap.snapshotId);
  assert.equal(await sums(kid), final);
  await kid.kill();
  await sbx.files.write('/home/user/after-snap.txt', 'x');
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/rollback`, { body: { snapshotID: snap.snapshotId } })).status, 200);
  assert.equal(await sums(sbx), final);
  assert.ok(!fs.existsSync(diskDir(sbx.sandboxId)), 'a rollback replaces the saved layers');
  // Snapshot of a sandbox while it is paused to disk: only the saved layers.
  await sbx.files.write('/home/user/while-paused.txt', 'on disk');
  const withFile = await sums(sbx);
  assert.equal(await sbx.pause({ keepMemory: false }), true);
  const snap2 = await Sandbox.createSnapshot(sbx.sandboxId, c.sdkOpts);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'paused');
  const kid2 = await create(snap2.snapshotId);
  assert.equal(await sums(kid2), withFile);
  await kid2.kill();
  // Rollback of a sandbox paused to disk: it runs again, on the snapshot's files.
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/rollback`, { body: { snapshotID: snap.snapshotId } })).status, 200);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'running');
  assert.equal(await sums(sbx), final);
  assert.ok(!fs.existsSync(diskDir(sbx.sandboxId)));
  await sbx.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
  assert.equal(await Sandbox.deleteSnapshot(snap2.snapshotId, c.sdkOpts), true);
  assert.ok(!fs.existsSync(diskDir(sbx.sandboxId)), 'saved layers removed with the sandbox');
});

ctest(c, 'twelve pauses to disk: saved layers are merged into one, and every change of every cycle stays right', { timeout: 180_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create('pdstart', { ...c.sdkOpts, timeoutMs: 120_000 });
  // Files, deletions of template files (whiteouts), a dir replaced by a file and back, a dir deleted and
  // made again (an opaque dir over older saved layers): what the merge has to get right.
  const steps = [
    'mkdir -p /home/user/d/sub /opt/x && echo a > /home/user/d/sub/a && echo x1 > /opt/x/one && echo s0 > /home/user/shared',
    'rm -f /etc/issue && echo x2 > /opt/x/two',
    'rm -rf /home/user/d && echo now-a-file > /home/user/d',
    'rm -rf /opt/x && mkdir /opt/x && echo fresh > /opt/x/new',
    'rm -f /home/user/d && mkdir -p /home/user/d/again && echo b > /home/user/d/again/b',
    'rm -rf /usr/share/doc/bash',
    'echo x3 > /opt/x/three && chmod 600 /opt/x/three && ln -sf /opt/x/new /home/user/link && ln /opt/x/three /opt/x/three-link',
  ];
  const LIST = 'cd / && find home/user opt etc usr/share/doc tmp -xdev ! -path tmp/boot-id -printf "%p %y %m\\n" | LC_ALL=C sort | sha256sum; ' +
    'find home/user opt tmp -xdev -type f ! -path tmp/boot-id | LC_ALL=C sort | xargs -r sha256sum';
  const saved = () => fs.readdirSync(diskDir(sbx.sandboxId)).filter((n) => !n.startsWith('.')).length;
  let maxSaved = 0;
  for (let i = 0; i < 12; i++) {
    await sbx.commands.run(`${steps[i] ?? 'true'} && echo ${i} >> /home/user/shared && echo ${i} > /tmp/c${i}`, { user: 'root' });
    const want = (await sbx.commands.run(LIST, { user: 'root' })).stdout;
    assert.equal(await sbx.pause({ keepMemory: false }), true, `cycle ${i}: pause`);
    maxSaved = Math.max(maxSaved, saved());
    if (i === 8) assert.equal(saved(), 1, 'the ninth pause to disk merges the eight saved layers and the new one');
    await sbx.connect();
    assert.equal((await sbx.commands.run(LIST, { user: 'root' })).stdout, want, `cycle ${i}: the tree differs after connect`);
  }
  assert.ok(maxSaved <= 8, `at most eight saved layers (saw ${maxSaved})`);
  assert.equal((await sbx.commands.run('cat /home/user/shared')).stdout, 's0\n' + [...Array(12).keys()].join('\n') + '\n');
  assert.equal((await sbx.commands.run('test -e /etc/issue || echo gone')).stdout, 'gone\n');
  assert.equal((await sbx.commands.run('ls /opt/x | tr "\\n" " "')).stdout, 'new three three-link ');
  assert.equal((await sbx.commands.run('stat -c %i /opt/x/three /opt/x/three-link | uniq | wc -l')).stdout, '1\n',
    'a hard link stays one file through saves and the merge');
  assert.equal((await sbx.commands.run('test -e /usr/share/doc/bash || echo gone')).stdout, 'gone\n');
  await sbx.kill();
});

ctest(c, 'paused to disk survives kill -9 of cubed; connect after the restart; errors', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000, metadata: { k: 'v' } });
  const data = crypto.randomBytes(3 << 20);
  await sbx.files.write('/home/user/keep.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
  const before = await sums(sbx);
  const marker = `sleep ${900000 + Math.floor(Math.random() * 99999)}`;
  await sbx.commands.run(marker, { background: true, timeoutMs: 0 });
  const running = () => hostPids().some((p) => {
    try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(marker); } catch { return false; }
  });
  assert.ok(await waitFor(() => running(), 10_000), 'the host sees the marker process');
  assert.equal(await sbx.pause({ keepMemory: false }), true);
  assert.ok(!running(), 'its processes are gone once the pause to disk is answered');
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/rollback`, { body: { snapshotID: 'x' } })).status, 404);

  await c.kill9();
  await c.restart();
  const listed = await api(c, 'GET', '/v2/sandboxes?state=paused');
  assert.ok(listed.json.some((s) => s.sandboxID === sbx.sandboxId), 'listed as paused after the restart');
  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.equal(info.state, 'paused');
  assert.deepEqual(info.metadata, { k: 'v' });
  const again = await Sandbox.connect(sbx.sandboxId, c.sdkOpts);
  assert.equal(await sums(again), before);
  assert.equal(await sums(sbx), before, 'the old client object (same token) works too');
  // A second restart adopts it running, on its saved layer.
  await c.kill9();
  await c.restart();
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'running');
  assert.equal(await sums(sbx), before);
  // Pause to disk of a sandbox paused in memory: already paused.
  assert.equal(await sbx.pause(), true);
  assert.equal(await sbx.pause({ keepMemory: false }), false);
  await sbx.kill();
  assert.ok(!fs.existsSync(diskDir(sbx.sandboxId)));
  assert.equal((await api(c, 'POST', '/sandboxes/inosuch/pause', { body: { memory: false } })).status, 404);
});

ctest(c, 'cubemastercli sandbox pause --to-disk, resume', { timeout: 60_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args]);
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 60_000 });
  await sbx.files.write('/home/user/cli.txt', 'kept on disk');
  let r = await cli('sandbox', 'pause', sbx.sandboxId, '--to-disk');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${sbx.sandboxId} paused\n`);
  assert.ok(fs.existsSync(diskDir(sbx.sandboxId)));
  r = await cli('sandbox', 'pause', sbx.sandboxId, '--to-disk');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /409: .*already paused/);
  r = await cli('sandbox', 'resume', sbx.sandboxId, '--to-disk');
  assert.notEqual(r.code, 0, 'resume has no --to-disk');
  r = await cli('sandbox', 'resume', sbx.sandboxId);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${sbx.sandboxId} resumed\n`);
  assert.equal(await sbx.files.read('/home/user/cli.txt'), 'kept on disk');
  await sbx.kill();
});

forEachSdk(c, 'lifecycle onTimeout {action: pause, keepMemory: false} pauses to disk at timeout; connect brings it back', { timeout: 60_000 }, async ({ create, Sandbox }) => {
  const sbx = await create({ timeoutMs: 3_000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } });
  await sbx.files.write('/home/user/auto.txt', 'saved at timeout');
  const d = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`);
  assert.equal(d.json.lifecycle.onTimeout, 'pause');
  assert.ok(await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state === 'paused', 20_000),
    'paused at timeout');
  assert.ok(await waitFor(() => fs.existsSync(diskDir(sbx.sandboxId)) && fs.readdirSync(diskDir(sbx.sandboxId))
    .some((n) => !n.startsWith('.')), 5_000), 'saved to disk');
  // The deprecated /resume boots it too (201); a connect then only extends it.
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/resume`, { body: { timeout: 30 } })).status, 201);
  await sbx.connect({ timeoutMs: 30_000 });
  assert.equal(await sbx.files.read('/home/user/auto.txt'), 'saved at timeout');
  await sbx.kill();
  // autoPauseMemory: false needs autoPause and excludes autoResume (400), as in E2B.
  assert.equal((await api(c, 'POST', '/sandboxes', { body: { templateID: 'base', autoPauseMemory: false } })).status, 400);
});

ctest(c, 'kill -9 of cubed in the middle of a pause to disk: old or new state, no half copy, retry works', { timeout: 180_000 }, async (t) => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  for (const delayMs of [5, 40, 150]) {
    const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000 });
    await sbx.commands.run('head -c 64M /dev/urandom > /home/user/big.bin');
    const before = await sums(sbx);
    const pending = api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: { memory: false } }).catch(() => null);
    await new Promise((res) => setTimeout(res, delayMs));
    await c.kill9();
    await pending;
    await c.restart();
    const info = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`);
    assert.equal(info.status, 200, 'the sandbox survives either way');
    assert.ok(['running', 'paused'].includes(info.json.state), info.json.state);
    t.diagnostic(`kill -9 after ${delayMs} ms: ${info.json.state}`);
    // No scratch copy is left; what is on disk is exactly what the database names.
    const left = fs.existsSync(diskDir(sbx.sandboxId)) ? fs.readdirSync(diskDir(sbx.sandboxId)) : [];
    assert.ok(!left.some((n) => n.startsWith('.')), `scratch left: ${left}`);
    assert.equal(left.length, info.json.state === 'paused' ? 1 : 0);
    if (info.json.state === 'paused') await sbx.connect();
    assert.equal(await sums(sbx), before);
    // The operation can be retried.
    assert.equal(await sbx.pause({ keepMemory: false }), true);
    await sbx.connect();
    assert.equal(await sums(sbx), before);
    await sbx.kill();
  }
});
