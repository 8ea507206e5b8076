// Snapshots with the unmodified SDK: createSnapshot of a running (and of a paused) sandbox, sandboxes
// created from the snapshot id or name see its files and keep their own writes private, list and delete;
// a kill -9 of cubed while snapshots exist keeps them usable, and nothing is left mounted afterwards.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useCubed, Cubed, forEachSdk, ctest, loadSdk, api, sha256, templatesDir, run, bin, waitFor, sleep } from './harness.mjs';

// A private templates dir (snapshots are written there as templates), with the shared base template.
const tplDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-e2e-snap-tpl-'));
fs.symlinkSync(path.join(templatesDir, 'base'), path.join(tplDir, 'base'));
const c = useCubed({ extraArgs: ['--templates-dir', tplDir] });
after(() => fs.rmSync(tplDir, { recursive: true, force: true }));

const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(c.stateDir));

async function allSnapshots(Sandbox, opts = {}) {
  const pager = Sandbox.listSnapshots({ ...c.sdkOpts, ...opts });
  const all = [];
  while (pager.hasNext && all.length < 1000) all.push(...await pager.nextItems());
  return all;
}

forEachSdk(c, 'snapshot -> sandboxes from it see its files, their own writes stay private; list, delete', { timeout: 180_000 }, async ({ create, Sandbox }) => {
  const src = await create({ timeoutMs: 120_000 });
  const big = Buffer.alloc(3 << 20, 7);
  await src.files.write('/home/user/data.bin', big.buffer.slice(big.byteOffset, big.byteOffset + big.length));
  await src.commands.run('mkdir -p /opt/app && echo v1 > /opt/app/version && rm -f /etc/motd && ln -s /opt/app/version /home/user/link', { user: 'root' });
  const bg = await src.commands.run('sleep 600', { background: true, timeoutMs: 0 });

  const snap = await src.createSnapshot();
  assert.match(snap.snapshotId, /^snap[a-z0-9]+$/);
  assert.deepEqual(snap.names, []);
  // The source keeps running, with its processes.
  assert.equal((await src.commands.run('echo still')).stdout, 'still\n');
  assert.ok((await src.commands.list()).some((p) => p.pid === bg.pid));
  await src.files.write('/home/user/after.txt', 'written after the snapshot');

  // Ten sandboxes from the snapshot.
  const kids = await Promise.all(Array.from({ length: 10 }, () => create(snap.snapshotId, { timeoutMs: 120_000 })));
  await Promise.all(kids.map(async (k, i) => {
    const r = await k.commands.run('sha256sum /home/user/data.bin; cat /opt/app/version; readlink /home/user/link; ' +
      'test -e /etc/motd && echo motd || echo no-motd; test -e /home/user/after.txt && echo after || echo no-after');
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0].split(/\s+/)[0], sha256(big), `kid ${i}: data.bin differs`);
    assert.deepEqual(lines.slice(1), ['v1', '/opt/app/version', 'no-motd', 'no-after']);
    await k.files.write('/home/user/mine.txt', `kid ${i}`);
  }));
  // Private writes: each kid sees only its own file; the source sees none of them.
  for (const [i, k] of kids.entries()) assert.equal(await k.files.read('/home/user/mine.txt'), `kid ${i}`);
  assert.equal((await src.commands.run('test -e /home/user/mine.txt && echo yes || echo no')).stdout, 'no\n');
  assert.equal((await Sandbox.getInfo(kids[0].sandboxId, c.sdkOpts)).templateId, snap.snapshotId);

  // A snapshot of a paused sandbox, with a name; it stays paused.
  assert.equal(await src.pause(), true);
  const named = await Sandbox.createSnapshot(src.sandboxId, { ...c.sdkOpts, name: `named-${snap.snapshotId}` });
  assert.deepEqual(named.names, [`named-${snap.snapshotId}`]);
  assert.equal((await Sandbox.getInfo(src.sandboxId, c.sdkOpts)).state, 'paused');
  const fromName = await create(`named-${snap.snapshotId}`);
  assert.equal(await fromName.files.read('/home/user/after.txt'), 'written after the snapshot');

  const listed = (await allSnapshots(Sandbox, { sandboxId: src.sandboxId })).map((s) => s.snapshotId);
  assert.deepEqual(listed.sort(), [snap.snapshotId, named.snapshotId].sort());
  const paged = await Sandbox.listSnapshots({ ...c.sdkOpts, sandboxId: src.sandboxId, limit: 1 }).nextItems();
  assert.equal(paged.length, 1);

  // Delete: refused while sandboxes use it, then fine; unknown → false.
  await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts));
  await Promise.all(kids.map((k) => k.kill()));
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), false);
  assert.ok(!(await allSnapshots(Sandbox)).some((s) => s.snapshotId === snap.snapshotId));
  await fromName.kill();
  assert.equal(await Sandbox.deleteSnapshot(named.snapshotId, c.sdkOpts), true);
  await src.connect();
  assert.equal((await src.commands.run('cat /opt/app/version')).stdout, 'v1\n');
});

ctest(c, 'snapshots survive kill -9 of cubed; errors; nothing stays mounted', { timeout: 120_000 }, async () => {
  const { Sandbox, SandboxNotFoundError } = await loadSdk('e2b-2.51');
  const src = await Sandbox.create(c.sdkOpts);
  await src.files.write('/home/user/keep.txt', 'kept');
  const snap = await src.createSnapshot();
  await c.kill9();
  await c.restart();
  const kid = await Sandbox.create(snap.snapshotId, c.sdkOpts);
  assert.equal(await kid.files.read('/home/user/keep.txt'), 'kept');
  assert.ok((await allSnapshots(Sandbox)).some((s) => s.snapshotId === snap.snapshotId));

  await assert.rejects(Sandbox.createSnapshot('inosuchsandbox', c.sdkOpts), SandboxNotFoundError);
  const bad = await api(c, 'POST', `/sandboxes/${src.sandboxId}/snapshots`, { body: { name: 'no/slashes' } });
  assert.equal(bad.status, 400);
  assert.equal((await api(c, 'GET', '/snapshots?limit=0')).status, 400);

  await kid.kill();
  await src.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
  // A kill is answered at once; processes, cgroups and then mounts go in the background.
  await waitFor(() => mounts().length === 0, 10_000);
  assert.deepEqual(mounts(), [], 'mounts left on the host');
});

ctest(c, 'cubemastercli snapshot create, list, info, delete and sandbox fork', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const src = await Sandbox.create(c.sdkOpts);
  const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args]);
  try {
    await src.files.write('/home/user/cli.txt', 'from the cli snapshot');
    let r = await cli('snapshot', 'create', src.sandboxId, '--name', `cli-${src.sandboxId}`);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    assert.match(id, /^snap[a-z0-9]+$/);
    r = await cli('--json', 'snapshot', 'list', '--sandbox', src.sandboxId);
    assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(r.stdout);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].snapshotID, id);
    assert.deepEqual(listed[0].names, [`cli-${src.sandboxId}`]);
    r = await cli('snapshot', 'list');
    assert.match(r.stdout, new RegExp(`^${id}\\s+cli-${src.sandboxId}\\s+${src.sandboxId}`, 'm'));
    for (const ref of [id, `cli-${src.sandboxId}`]) {
      r = await cli('--json', 'snapshot', 'info', ref);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).snapshotID, id);
    }
    r = await cli('snapshot', 'info', id);
    assert.match(r.stdout, new RegExp(`^sandboxID\\s+${src.sandboxId}$`, 'm'));
    r = await cli('snapshot', 'info', 'no-such-snapshot');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /404: snapshot 'no-such-snapshot' not found/);
    const kid = await Sandbox.create(`cli-${src.sandboxId}`, c.sdkOpts);
    assert.equal(await kid.files.read('/home/user/cli.txt'), 'from the cli snapshot');
    await kid.kill();
    // sandbox fork: one new sandbox id per line, each with the source's files.
    r = await cli('sandbox', 'fork', src.sandboxId, '--count', '2');
    assert.equal(r.code, 0, r.stderr);
    const forks = r.stdout.trim().split('\n');
    assert.equal(forks.length, 2);
    for (const f of forks) {
      const fk = await Sandbox.connect(f, c.sdkOpts);
      assert.equal(await fk.files.read('/home/user/cli.txt'), 'from the cli snapshot');
      await fk.kill();
    }
    assert.equal((await cli('sandbox', 'fork', src.sandboxId, '--count', '0')).code, 2);
    assert.equal((await cli('sandbox', 'fork', 'nosuchsandbox')).code, 1);
    r = await cli('snapshot', 'delete', id);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${id} deleted\n`);
    r = await cli('snapshot', 'delete', id);
    assert.equal(r.code, 1);
    assert.equal((await cli('snapshot', 'create')).code, 2);
    // The reference CLI's spellings: --sandbox-id, --display-name, --snapshot-id, ls, describe.
    r = await cli('snapshot', 'create', '--sandbox-id', src.sandboxId, '--display-name', `ref-${src.sandboxId}`);
    assert.equal(r.code, 0, r.stderr);
    const ref = r.stdout.trim();
    r = await cli('--json', 'snapshot', 'ls', '--sandbox-id', src.sandboxId);
    assert.deepEqual(JSON.parse(r.stdout).find((x) => x.snapshotID === ref)?.names, [`ref-${src.sandboxId}`]);
    r = await cli('--json', 'snapshot', 'describe', '--snapshot-id', ref);
    assert.equal(JSON.parse(r.stdout).sandboxID, src.sandboxId);
    assert.equal((await cli('snapshot', 'create', src.sandboxId, '--sandbox-id', src.sandboxId)).code, 2, 'one subject');
    assert.equal((await cli('snapshot', 'info', ref, '--snapshot-id', ref)).code, 2, 'one subject');
    r = await cli('snapshot', 'delete', '--snapshot-id', ref);
    assert.equal(r.stdout, `${ref} deleted\n`);
  } finally {
    await src.kill().catch(() => null);
  }
});

forEachSdk(c, 'fork of 5: each fork has the files, their writes stay private, the source keeps running', { timeout: 120_000 }, async ({ create, Sandbox, sdk }) => {
  const src = await create({ timeoutMs: 120_000, metadata: { role: 'source' } });
  await src.files.write('/home/user/state.txt', 'before the fork');
  const forks = await src.fork({ count: 5, timeoutMs: 60_000 });
  try {
    assert.equal(forks.length, 5);
    for (const f of forks) assert.ok(!(f instanceof Error), `a fork failed: ${f}`);
    const ids = new Set(forks.map((f) => f.sandboxId));
    assert.equal(ids.size, 5);
    assert.ok(!ids.has(src.sandboxId));
    await Promise.all(forks.map(async (f, i) => {
      assert.equal(await f.files.read('/home/user/state.txt'), 'before the fork');
      await f.files.write('/home/user/state.txt', `fork ${i}`);
    }));
    for (const [i, f] of forks.entries()) assert.equal(await f.files.read('/home/user/state.txt'), `fork ${i}`);
    assert.equal(await src.files.read('/home/user/state.txt'), 'before the fork');
    const info = await Sandbox.getInfo(forks[0].sandboxId, c.sdkOpts);
    assert.deepEqual(info.metadata, { role: 'source' });
    assert.equal((await Sandbox.getInfo(src.sandboxId, c.sdkOpts)).state, 'running');
    const r = await api(c, 'POST', `/sandboxes/${src.sandboxId}/fork`, { body: { count: 0 } });
    assert.equal(r.status, 400);
    await assert.rejects(Sandbox.fork('inosuchsandbox', { ...c.sdkOpts, count: 1 }), sdk.SandboxNotFoundError);
  } finally {
    await Promise.all(forks.filter((f) => !(f instanceof Error)).map((f) => f.kill().catch(() => null)));
  }
});

ctest(c, "a fork's snapshot lives as long as a sandbox uses it; also across kill -9 of cubed", { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const src = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000 });
  const forkSnaps = async () => (await allSnapshots(Sandbox, { sandboxId: src.sandboxId })).map((s) => s.snapshotId);
  const layerDirs = () => { const d = path.join(c.stateDir, 'layers', 'sha256'); return fs.existsSync(d) ? fs.readdirSync(d) : []; };
  try {
    const baseLayers = layerDirs().length;
    await src.files.write('/home/user/state.txt', 'forked');
    const forks = await src.fork({ count: 3, timeoutMs: 60_000 });
    const [snap] = await forkSnaps();
    assert.ok(snap, 'the fork snapshot is listed while its forks run');
    // Fork 0 still runs on it; a snapshot of fork 0 stacks on its layer.
    const kept = await forks[0].createSnapshot();
    await forks[1].kill();
    await forks[2].kill();
    await sleep(300);
    const listed = async () => (await allSnapshots(Sandbox)).map((x) => x.snapshotId);
    assert.ok((await listed()).includes(snap), 'in use by fork 0');
    const child = await Sandbox.create(kept.snapshotId, c.sdkOpts);
    await forks[0].kill();
    assert.ok(await waitFor(async () => !(await listed()).includes(snap), 10_000), 'deleted with its last fork');
    // Its layer stays while a snapshot above it (kept) needs it; the explicit snapshot is never auto-deleted.
    assert.equal(await child.files.read('/home/user/state.txt'), 'forked');
    await child.kill();
    await sleep(300);
    assert.ok((await listed()).includes(kept.snapshotId), 'an explicit snapshot stays');
    assert.equal(await Sandbox.deleteSnapshot(kept.snapshotId, c.sdkOpts), true);
    assert.ok(await waitFor(() => layerDirs().length === baseLayers, 10_000), 'layers of both snapshots removed');

    // The last fork killed just before a kill -9: after the restart the snapshot is gone either way.
    const [f] = await src.fork({ count: 1, timeoutMs: 60_000 });
    const [snap2] = await forkSnaps();
    await f.kill();
    await c.kill9();
    await c.restart();
    assert.deepEqual(await forkSnaps(), [], `${snap2} survived`);

    // A sandbox rolled back onto a fork's snapshot uses it; rolled back away again, it releases it.
    const [g] = await src.fork({ count: 1, timeoutMs: 60_000 });
    const [snap3] = await forkSnaps();
    const b = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 60_000 });
    const rb = (to) => api(c, 'POST', `/sandboxes/${b.sandboxId}/rollback`, { body: { snapshotID: to } });
    try {
      assert.equal((await rb(snap3)).status, 200);
      await g.kill();
      await sleep(300);
      assert.ok((await listed()).includes(snap3), 'in use by the rolled-back sandbox');
      const other = await src.createSnapshot();
      assert.equal((await rb(other.snapshotId)).status, 200);
      assert.ok(await waitFor(async () => !(await listed()).includes(snap3), 10_000), 'released by the rollback away');
      await b.kill();
      assert.equal(await Sandbox.deleteSnapshot(other.snapshotId, c.sdkOpts), true);
    } finally {
      await b.kill().catch(() => null);
    }
  } finally {
    await src.kill().catch(() => null);
  }
});

ctest(c, "a fork that starts nothing (a full node) leaves no snapshot behind", { timeout: 60_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-e2e-fullfork-tpl-'));
  fs.symlinkSync(path.join(templatesDir, 'base'), path.join(dir, 'base'));
  const full = new Cubed({ extraArgs: ['--templates-dir', dir, '--max-sandboxes', '1'] });
  await full.start();
  try {
    const src = await Sandbox.create({ ...full.sdkOpts, timeoutMs: 60_000 });
    const r = await api(full, 'POST', `/sandboxes/${src.sandboxId}/fork`, { body: { count: 2 } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.map((x) => x.error?.code), [429, 429]);
    assert.deepEqual((await api(full, 'GET', '/snapshots')).json, []);
    assert.deepEqual(fs.readdirSync(dir), ['base'], 'no snapshot template left');
  } finally {
    await full.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

ctest(c, 'kill -9 of cubed in the middle of a snapshot: no half snapshot, the sandbox thaws, a retry works', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const src = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 120_000 });
  try {
    await src.commands.run('head -c 209715200 /dev/urandom > /home/user/big && echo 1 > /home/user/small', { timeoutMs: 60_000 });
    const before = (await allSnapshots(Sandbox)).length;
    const layers = path.join(c.stateDir, 'layers');
    // Start a snapshot (200 MB to copy) and kill cubed while the copy runs.
    const pending = api(c, 'POST', `/sandboxes/${src.sandboxId}/snapshots`, { body: {}, timeoutMs: 10_000 }).catch((e) => e);
    const copying = await waitFor(() => fs.existsSync(layers) && fs.readdirSync(layers).some((n) => n.startsWith('.copy-snap-')), 10_000, 5);
    assert.ok(copying, 'the snapshot copy never started');
    await c.kill9();
    await pending;
    await c.restart();
    // No half snapshot: nothing new listed, no scratch copy left, the sandbox runs again (it was frozen).
    assert.equal((await allSnapshots(Sandbox)).length, before);
    assert.deepEqual(fs.readdirSync(layers).filter((n) => n.startsWith('.copy-')), []);
    assert.equal((await Sandbox.getInfo(src.sandboxId, c.sdkOpts)).state, 'running');
    assert.equal((await src.commands.run('cat /home/user/small')).stdout, '1\n');
    // The operation can be retried.
    const snap = await src.createSnapshot();
    const kid = await Sandbox.create(snap.snapshotId, c.sdkOpts);
    assert.equal((await kid.commands.run('stat -c %s /home/user/big')).stdout, '209715200\n');
    await kid.kill();
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, c.sdkOpts), true);
  } finally {
    await src.kill().catch(() => null);
  }
});

ctest(c, 'a chain of 60 snapshots of snapshots: deep ones are flattened into one layer above the base; files, deletions, rollback and a restart hold', { timeout: 240_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const layersOf = (id) => JSON.parse(fs.readFileSync(path.join(tplDir, id, 'template.json'), 'utf8')).layers;
  const run = async (id, cmd) => {
    const sbx = await Sandbox.connect(id, c.sdkOpts);
    return (await sbx.commands.run(cmd, { user: 'root' })).stdout;
  };
  const snaps = [];
  let tpl = 'base', flattenedAt = 0;
  for (let g = 1; g <= 60; g++) {
    const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: tpl, timeout: 120 } });
    assert.equal(r.status, 201, `generation ${g}: create from ${tpl}: ${r.text}`);
    const id = r.json.sandboxID;
    await run(id, `echo ${g} > /home/user/g${g}` + (g === 3 ? ' && rm /etc/issue' : '') +
      (g === 5 ? ' && mkdir -p /opt/d && echo 5 > /opt/d/f' : '') + (g === 52 ? ' && rm -rf /opt/d && mkdir /opt/d && echo 52 > /opt/d/new' : ''));
    const s = await api(c, 'POST', `/sandboxes/${id}/snapshots`, { body: {} });
    assert.equal(s.status, 201, `generation ${g}: snapshot: ${s.text}`);
    await api(c, 'DELETE', `/sandboxes/${id}`);
    tpl = s.json.snapshotID;
    snaps.push(tpl);
    // Flattened: one layer for the whole chain, above the root template's own (shared, not copied).
    if (!flattenedAt && g > 1 && layersOf(tpl).length === 2) flattenedAt = g;
    assert.ok(layersOf(tpl).length <= 49, `generation ${g}: ${layersOf(tpl).length} layers`);
    assert.equal(layersOf(tpl).at(-1), 'template/base', `generation ${g}: the base stays below`);
  }
  assert.ok(flattenedAt > 40 && flattenedAt < 50, `flattened at generation ${flattenedAt}`);
  const merged = path.join(c.stateDir, 'layers', layersOf(snaps[flattenedAt - 1])[0], 'rootfs');
  assert.ok(fs.existsSync(path.join(merged, 'home/user/g1')), 'the chain is in the merged layer');
  assert.ok(!fs.existsSync(path.join(merged, 'usr/bin/python3')), 'the base image is not copied into it');
  const last = await Sandbox.create(tpl, { ...c.sdkOpts, timeoutMs: 120_000 });
  try {
    const seen = (await last.commands.run('cat /home/user/g* | sort -n | tr "\\n" " "')).stdout;
    assert.equal(seen, [...Array(60).keys()].map((i) => i + 1).join(' ') + ' ');
    assert.equal((await last.commands.run('test -e /etc/issue || echo gone')).stdout, 'gone\n');
    assert.equal((await last.commands.run('ls /opt/d | tr "\\n" " "')).stdout, 'new ', 'the opaque dir of generation 52');
    assert.equal((await last.commands.run('python3 -c "print(6*7)"')).stdout, '42\n', 'the base image is whole');
    // A sandbox from an early, stacked snapshot rolls back to a flattened one of the same chain.
    const early = await Sandbox.create(snaps[9], { ...c.sdkOpts, timeoutMs: 120_000 });
    const rb = await api(c, 'POST', `/sandboxes/${early.sandboxId}/rollback`, { body: { snapshotID: snaps[flattenedAt - 1] } });
    assert.equal(rb.status, 200, rb.text);
    assert.equal((await early.commands.run(`cat /home/user/g${flattenedAt}`)).stdout, `${flattenedAt}\n`);
    await early.kill();
    // A template dir that does not load (here: not JSON) never keeps cubed from starting.
    fs.mkdirSync(path.join(tplDir, 'broken'));
    fs.writeFileSync(path.join(tplDir, 'broken', 'template.json'), '{nope');
    await c.restart();
    assert.equal((await last.commands.run('cat /home/user/g60')).stdout, '60\n');
    assert.equal((await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'broken' } })).status, 404);
    const again = await Sandbox.create(tpl, { ...c.sdkOpts, timeoutMs: 60_000 });
    assert.equal((await again.commands.run('cat /home/user/g1')).stdout, '1\n');
    await again.kill();
  } finally {
    fs.rmSync(path.join(tplDir, 'broken'), { recursive: true, force: true });
    await last.kill().catch(() => null);
  }
});
