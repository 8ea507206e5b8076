// Rollback (CubeSandbox extension, POST /sandboxes/{id}/rollback {snapshotID}) with the unmodified SDK
// for everything else: files written, snapshot, files changed/deleted/added, rollback → exactly the
// snapshot's files, same sandbox id and access token, processes restarted; errors 400/404/409; a paused
// sandbox comes back running; egress policy and traffic token stay; the CLI; a kill -9 of cubed right
// after a rollback leaves a truthful state.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, forEachSdk, ctest, loadSdk, api, sha256, bootMarkerTemplates, run, bin, dataRequest, waitFor } from './harness.mjs';

// Snapshots are written as templates: a private templates dir with the shared base template.
const tplDir = bootMarkerTemplates('rollback', 'rbstart');
const c = useCubed({ extraArgs: ['--templates-dir', tplDir] });

// Checksums of every regular file under the directories we touch, plus which marker files exist.
const SUM = 'cd / && find home/user opt/rb -type f 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum; ' +
  'test -e /etc/motd && echo motd || echo no-motd';
const sums = async (sbx) => (await sbx.commands.run(SUM, { user: 'root' })).stdout;
const rollback = (sandboxId, snapshotID) => api(c, 'POST', `/sandboxes/${sandboxId}/rollback`, { body: { snapshotID } });

forEachSdk(c, 'rollback restores exactly the snapshot\'s files in the same sandbox', { timeout: 120_000 }, async ({ create, Sandbox }) => {
  const sbx = await create({ timeoutMs: 120_000 });
  const big = crypto.randomBytes(2 << 20);
  await sbx.files.write('/home/user/data.bin', big.buffer.slice(big.byteOffset, big.byteOffset + big.length));
  await sbx.files.write('/home/user/a.txt', 'version 1');
  await sbx.commands.run('mkdir -p /opt/rb/sub && echo keep > /opt/rb/sub/k && rm -f /etc/motd', { user: 'root' });
  const before = await sums(sbx);
  assert.match(before, /data\.bin/);
  assert.match(before, /no-motd\n$/);
  const snap = await sbx.createSnapshot();

  // Change, delete and add files; start a process.
  await sbx.files.write('/home/user/a.txt', 'version 2');
  await sbx.commands.run('rm /home/user/data.bin && rm -r /opt/rb/sub && echo new > /home/user/new.txt && echo m > /etc/motd',
    { user: 'root' });
  const bg = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 });
  assert.notEqual(await sums(sbx), before);

  const r = await rollback(sbx.sandboxId, snap.snapshotId);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.sandboxID, sbx.sandboxId);
  assert.equal(r.json.snapshotID, snap.snapshotId);
  assert.equal(r.json.status, 'completed');

  // The same client object (same id, same envd access token) works on the restored files.
  assert.equal(await sums(sbx), before);
  assert.equal(await sbx.files.read('/home/user/a.txt'), 'version 1');
  assert.equal((await sbx.commands.run('sha256sum /home/user/data.bin')).stdout.split(/\s+/)[0], sha256(big));
  assert.ok(!(await sbx.commands.list()).some((p) => p.pid === bg.pid), 'processes are restarted by a rollback');
  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.equal(info.state, 'running');
  assert.equal(info.templateId, 'base');

  // Work after the rollback, snapshot again (stacked on the first), roll back to either.
  await sbx.files.write('/home/user/a.txt', 'version 3');
  const snap2 = await sbx.createSnapshot();
  await sbx.files.write('/home/user/a.txt', 'version 4');
  assert.equal((await rollback(sbx.sandboxId, snap2.snapshotId)).status, 200);
  assert.equal(await sbx.files.read('/home/user/a.txt'), 'version 3');
  assert.equal((await rollback(sbx.sandboxId, snap.snapshotId)).status, 200);
  assert.equal(await sbx.files.read('/home/user/a.txt'), 'version 1');
  // A snapshot in use by a rolled-back sandbox cannot be deleted; after the kill it can.
  await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts));
  await sbx.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap2.snapshotId, c.sdkOpts), true);
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
});

ctest(c, 'rollback errors: 400 bad body, 404 unknown sandbox or snapshot, 409 another lineage; paused → running', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const a = await Sandbox.create(c.sdkOpts);
  await a.files.write('/home/user/f.txt', 'a');
  const snapA = await a.createSnapshot();
  const b = await Sandbox.create(snapA.snapshotId, c.sdkOpts);
  const snapB = await b.createSnapshot();

  for (const body of [{}, { snapshotID: 5 }, { snapshotID: '' }, []]) {
    const r = await api(c, 'POST', `/sandboxes/${a.sandboxId}/rollback`, { body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.code, 400);
  }
  assert.equal((await api(c, 'POST', `/sandboxes/${a.sandboxId}/rollback`, { rawBody: '{nope' })).status, 400);
  assert.equal((await rollback('inosuchsandbox', snapA.snapshotId)).status, 404);
  assert.equal((await rollback(a.sandboxId, 'snapnosuchsnapshot')).status, 404);
  assert.equal((await rollback(a.sandboxId, 'base')).status, 404, 'a template is not a snapshot');
  // b runs on snapA's layers: a snapshot of a plain base sandbox is not of its lineage; snapB is.
  const r409 = await rollback(b.sandboxId, (await a.createSnapshot()).snapshotId);
  assert.equal(r409.status, 409, r409.text);
  assert.equal((await rollback(a.sandboxId, snapB.snapshotId)).status, 200, 'a snapshot stacked above a\'s template');
  await a.files.write('/home/user/f.txt', 'changed');
  assert.equal((await rollback(a.sandboxId, snapA.snapshotId)).status, 200);
  assert.equal(await a.files.read('/home/user/f.txt'), 'a');

  // A paused sandbox is rolled back and comes back running.
  await a.files.write('/home/user/f.txt', 'paused');
  assert.equal(await a.pause(), true);
  assert.equal((await rollback(a.sandboxId, snapA.snapshotId)).status, 200);
  assert.equal((await Sandbox.getInfo(a.sandboxId, c.sdkOpts)).state, 'running');
  assert.equal(await a.files.read('/home/user/f.txt'), 'a');
  await a.kill();
  await b.kill();
});

ctest(c, 'rollback re-runs the template start command; env vars, metadata and timeout stay', { timeout: 60_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create('rbstart', { ...c.sdkOpts, timeoutMs: 90_000, envs: { RB_ENV: 'kept' },
    metadata: { who: 'rollback' } });
  const boot = async () => (await sbx.commands.run('cat /tmp/boot-id')).stdout;
  const first = await boot();
  assert.match(first, /^[0-9a-f-]{36}\n$/);
  const end0 = (await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).endAt.getTime();
  await sbx.files.write('/home/user/s.txt', 'snap');
  const snap = await sbx.createSnapshot();
  assert.equal((await rollback(sbx.sandboxId, snap.snapshotId)).status, 200);
  const second = await boot();
  assert.match(second, /^[0-9a-f-]{36}\n$/);
  assert.notEqual(second, first, 'the start command ran again');
  assert.equal((await sbx.commands.run('echo $RB_ENV')).stdout, 'kept\n');
  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.deepEqual(info.metadata, { who: 'rollback' });
  assert.equal(info.templateId, 'rbstart');
  assert.equal(info.endAt.getTime(), end0);
  await sbx.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
});

ctest(c, 'rollback keeps the egress policy and the traffic access token', { timeout: 60_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 60_000,
    network: { allowPublicTraffic: false, denyOut: ['203.0.113.0/24'] } });
  const token = sbx.trafficAccessToken;
  assert.match(token ?? '', /^[0-9a-f]{40}$/);
  const policy = (await api(c, 'GET', `/sandboxes/${sbx.sandboxId}/network`)).json;
  assert.ok(JSON.stringify(policy.denyOut).includes('203.0.113.0/24'), JSON.stringify(policy));
  const snap = await sbx.createSnapshot();
  assert.equal((await rollback(sbx.sandboxId, snap.snapshotId)).status, 200);
  const after = (await api(c, 'GET', `/sandboxes/${sbx.sandboxId}/network`)).json;
  for (const k of ['denyOut', 'allowOut', 'allowPublicTraffic']) assert.deepEqual(after[k], policy[k], k);
  await sbx.commands.run('python3 -m http.server 8080', { background: true, timeoutMs: 0 });
  const up = await waitFor(async () => (await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080,
    headers: { 'e2b-traffic-access-token': token } })).status === 200, 15_000, 200);
  assert.ok(up, 'the old traffic token is refused after the rollback');
  assert.equal((await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080 })).status, 403);
  await sbx.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
});

ctest(c, 'cubemastercli sandbox rollback; kill -9 of cubed after a rollback leaves a truthful state', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args]);
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000 });
  await sbx.files.write('/home/user/cli.txt', 'snapshot state');
  const snap = await sbx.createSnapshot();
  await sbx.files.write('/home/user/cli.txt', 'later state');
  let r = await cli('sandbox', 'rollback', sbx.sandboxId, snap.snapshotId);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${sbx.sandboxId} rolled back to ${snap.snapshotId}\n`);
  assert.equal(await sbx.files.read('/home/user/cli.txt'), 'snapshot state');
  r = await cli('sandbox', 'rollback', sbx.sandboxId, 'snapnosuch');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /404: snapshot 'snapnosuch' not found/);
  // The reference CLI's spelling: top-level rollback with --sandbox-id and --snapshot-id.
  await sbx.files.write('/home/user/cli.txt', 'later again');
  r = await cli('rollback', '--sandbox-id', sbx.sandboxId, '--snapshot-id', snap.snapshotId);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${sbx.sandboxId} rolled back to ${snap.snapshotId}\n`);
  assert.equal(await sbx.files.read('/home/user/cli.txt'), 'snapshot state');
  assert.equal((await cli('rollback', sbx.sandboxId)).code, 2, 'no snapshot');
  assert.equal((await cli('sandbox', 'rollback', sbx.sandboxId, snap.snapshotId, 'extra')).code, 2);

  // Persisted: after a kill -9 and restart of cubed the rolled-back sandbox is adopted as it is.
  await sbx.files.write('/home/user/cli.txt', 'after rollback');
  await c.kill9();
  await c.restart();
  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.equal(info.state, 'running');
  assert.equal(await sbx.files.read('/home/user/cli.txt'), 'after rollback');
  await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), 'still in use after the restart');

  // kill -9 while a rollback runs: afterwards the sandbox is either running (and works) or gone.
  const pending = rollback(sbx.sandboxId, snap.snapshotId).catch(() => null);
  await new Promise((res) => setTimeout(res, 30));
  await c.kill9();
  await pending;
  await c.restart();
  const got = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`);
  if (got.status === 200) {
    assert.equal(got.json.state, 'running');
    assert.match((await sbx.commands.run('cat /home/user/cli.txt')).stdout, /^(after rollback|snapshot state)$/);
    await sbx.kill();
  } else {
    assert.equal(got.status, 404);
  }
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
});
