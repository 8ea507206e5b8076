// Eviction of sandboxes paused in memory to disk, by policy, driven by the unmodified SDK: after an idle
// time (--evict-paused-after), when the node is full (a create, or a connect that needs a slot), and under
// memory pressure (all sandboxes above --evict-above-pct of --sandboxes-memory-mb). An evicted sandbox
// keeps every file and boots again on connect (start command re-run, processes gone: no CRIU here), also
// through the proxy when it has autoResume; connect {memory:false} (onResume 'reboot') cold-boots a sandbox
// paused in memory instead of thawing it.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, ctest, loadSdk, api, dataRequest, bootMarkerTemplates, waitFor, run, bin } from './harness.mjs';

const tplDir = bootMarkerTemplates('evict', 'evstart', { memoryMB: 512, diskSizeMB: 512 });

const idle = useCubed({ extraArgs: ['--templates-dir', tplDir, '--evict-paused-after', '2'] });
const full = useCubed({ extraArgs: ['--templates-dir', tplDir, '--max-sandboxes', '2'] });
const slow = useCubed({ extraArgs: ['--templates-dir', tplDir, '--evict-paused-after', '8'] });
const tight = useCubed({ extraArgs: ['--templates-dir', tplDir, '--sandboxes-memory-mb', '1000', '--evict-above-pct', '50'] });

const { Sandbox } = await loadSdk('e2b-2.51');
const SUM = 'cd / && find home/user tmp -type f ! -path tmp/boot-id | LC_ALL=C sort | xargs -r sha256sum';
const sums = async (sbx) => (await sbx.commands.run(SUM)).stdout;
const bootId = async (sbx) => (await sbx.commands.run('cat /tmp/boot-id')).stdout;
const onDisk = (c, id) => fs.existsSync(path.join(c.stateDir, 'disk', id)) &&
  fs.readdirSync(path.join(c.stateDir, 'disk', id)).some((n) => !n.startsWith('.'));
const kill = (c, id) => api(c, 'DELETE', `/sandboxes/${id}`).catch(() => null);

async function evicted(c, reason) {
  const text = (await api(c, 'GET', '/metrics')).text;
  const m = text.match(new RegExp(`^cube_sandboxes_evicted_total\\{reason="${reason}"\\} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

// A sandbox with files and a detached background process, as an agent leaves it. (Not an SDK background
// command: its open stream through the proxy is traffic, which would wake an autoResume sandbox.)
const BG = "pgrep -f '^sleep 900$' || true";
async function prepare(c, opts = {}) {
  const sbx = await Sandbox.create('evstart', { ...c.sdkOpts, timeoutMs: 120_000, ...opts });
  await sbx.commands.run('mkdir -p /home/user/work && head -c 3000000 /dev/urandom > /home/user/work/blob && ' +
    'echo note > /home/user/note && echo scratch > /tmp/scratch && (setsid sleep 900 </dev/null >/dev/null 2>&1 &)');
  assert.match((await sbx.commands.run(BG)).stdout, /^\d+\n$/);
  return { sbx, want: await sums(sbx), boot: await bootId(sbx) };
}

async function assertRebooted(sbx, { want, boot }) {
  assert.equal(await sums(sbx), want, 'files changed across the eviction');
  assert.equal((await sbx.commands.run(BG)).stdout, '', 'processes end when evicted to disk');
  assert.notEqual(await bootId(sbx), boot, 'the start command ran again');
}

ctest(idle, 'idle: a sandbox paused in memory moves to disk after --evict-paused-after; connect boots it with its files', { timeout: 90_000 }, async () => {
  const s = await prepare(idle);
  try {
    assert.equal(await s.sbx.pause(), true);
    // Still in memory right after the pause: a quick connect thaws it with its processes.
    assert.ok(!onDisk(idle, s.sbx.sandboxId));
    assert.ok(await waitFor(() => onDisk(idle, s.sbx.sandboxId) && evicted(idle, 'idle').then((n) => n >= 1), 15_000),
      'not evicted after the idle time');
    const info = await Sandbox.getInfo(s.sbx.sandboxId, idle.sdkOpts);
    assert.equal(info.state, 'paused', 'an evicted sandbox is still paused');
    assert.match((await api(idle, 'GET', '/metrics')).text, /^cube_sandboxes\{state="paused_disk"\} 1$/m);
    const logs = (await api(idle, 'GET', `/sandboxes/${s.sbx.sandboxId}/logs`)).text;
    assert.match(logs, /evicted to disk \(idle\)/);
    await s.sbx.connect();
    await assertRebooted(s.sbx, s);
    // A second pause → idle → connect cycle: the idle clock starts again with each pause.
    const again = { ...s, boot: await bootId(s.sbx), want: await sums(s.sbx) };
    await s.sbx.commands.run('echo second > /home/user/second');
    again.want = await sums(s.sbx);
    assert.equal(await s.sbx.pause(), true);
    assert.ok(await waitFor(() => evicted(idle, 'idle').then((n) => n >= 2), 15_000));
    await s.sbx.connect();
    await assertRebooted(s.sbx, again);
  } finally {
    await kill(idle, s.sbx.sandboxId);
  }
});

ctest(slow, 'the idle clock is stored with the sandbox: a restart of cubed does not reset it', { timeout: 90_000 }, async () => {
  const s = await prepare(slow);
  try {
    assert.equal(await s.sbx.pause(), true);
    await new Promise((r) => setTimeout(r, 5_000));
    assert.ok(!onDisk(slow, s.sbx.sandboxId));
    await slow.kill9();
    await slow.restart();
    // Paused 5 s before the restart: due about 3 s after it (a reset clock would wait the full 8 s).
    const t0 = Date.now();
    assert.ok(await waitFor(() => onDisk(slow, s.sbx.sandboxId), 15_000), 'not evicted after the restart');
    assert.ok(Date.now() - t0 < 6_500, `evicted ${Date.now() - t0} ms after the restart: the idle clock was reset`);
    await s.sbx.connect();
    await assertRebooted(s.sbx, s);
  } finally {
    await kill(slow, s.sbx.sandboxId);
  }
});

ctest(idle, 'autoResume: a request through the proxy boots an evicted sandbox and succeeds', { timeout: 90_000 }, async () => {
  const s = await prepare(idle, { timeoutMs: 3_000, lifecycle: { onTimeout: 'pause', autoResume: true } });
  try {
    assert.ok(await waitFor(() => onDisk(idle, s.sbx.sandboxId), 20_000), 'not paused at timeout and evicted');
    assert.equal((await Sandbox.getInfo(s.sbx.sandboxId, idle.sdkOpts)).state, 'paused');
    const r = await dataRequest(idle, { sandboxId: s.sbx.sandboxId, path: '/health' });
    assert.ok(r.status === 200 || r.status === 204, `proxy request to an evicted autoResume sandbox: ${r.status}`);
    assert.equal((await Sandbox.getInfo(s.sbx.sandboxId, idle.sdkOpts)).state, 'running');
    await s.sbx.setTimeout(120_000);
    await assertRebooted(s.sbx, s);
  } finally {
    await kill(idle, s.sbx.sandboxId);
  }
});

ctest(full, 'a full node moves a paused sandbox to disk for a create; a connect that finds no room is 429', { timeout: 90_000 }, async () => {
  const a = await prepare(full);
  const b = await Sandbox.create('evstart', { ...full.sdkOpts, timeoutMs: 120_000 });
  let c = null;
  try {
    assert.equal(await a.sbx.pause(), true);
    c = await Sandbox.create('evstart', { ...full.sdkOpts, timeoutMs: 120_000 }); // third on a node of two
    assert.ok(onDisk(full, a.sbx.sandboxId), 'the paused sandbox was not moved to disk');
    assert.equal(await evicted(full, 'admission'), 1);
    // a needs a slot and nothing is paused in memory: 429 with Retry-After, and it stays paused on disk.
    const r = await api(full, 'POST', `/v2/sandboxes/${a.sbx.sandboxId}/connect`, { body: {} });
    assert.equal(r.status, 429, r.text);
    assert.match(r.headers.get('retry-after') ?? '', /^\d+$/);
    assert.equal((await Sandbox.getInfo(a.sbx.sandboxId, full.sdkOpts)).state, 'paused');
    await c.kill();
    c = null;
    await a.sbx.connect();
    await assertRebooted(a.sbx, a);
  } finally {
    await Promise.all([a.sbx.sandboxId, b.sandboxId, c?.sandboxId].filter(Boolean).map((id) => kill(full, id)));
  }
});

ctest(full, "connect {memory:false} (onResume 'reboot') cold-boots a sandbox paused in memory from its files", { timeout: 90_000 }, async () => {
  const s = await prepare(full);
  try {
    assert.equal(await s.sbx.pause(), true);
    const back = await Sandbox.connect(s.sbx.sandboxId, { ...full.sdkOpts, onResume: 'reboot' });
    assert.equal(back.sandboxId, s.sbx.sandboxId);
    await assertRebooted(back, s);
    assert.equal(await evicted(full, 'connect'), 1);
    // memory kept (the default) still thaws: the background process survives.
    const bg = await back.commands.run('sleep 901', { background: true, timeoutMs: 0 });
    assert.equal(await back.pause(), true);
    await back.connect();
    assert.ok((await back.commands.list()).some((p) => p.pid === bg.pid), 'a memory pause keeps processes');
  } finally {
    await kill(full, s.sbx.sandboxId);
  }
});

ctest(full, 'cubemastercli sandbox evict moves a paused sandbox to disk now; node shows the policy', { timeout: 90_000 }, async () => {
  const cli = (...args) => run(bin.cli, ['--socket', full.socket, ...args]);
  const s = await prepare(full);
  try {
    let r = await cli('sandbox', 'evict', s.sbx.sandboxId);
    assert.equal(r.code, 1, 'a running sandbox is not evicted');
    assert.match(r.stderr, /409/);
    assert.equal(await s.sbx.pause(), true);
    // Where a paused sandbox is kept shows in the API (pausedTo) and in list and info.
    const shown = async (where) => {
      const row = (await cli('list')).stdout.split('\n').find((l) => l.startsWith(s.sbx.sandboxId));
      assert.match(row, new RegExp(`  paused \\(${where}\\)  .*  -  `), row);
      assert.match((await cli('info', s.sbx.sandboxId)).stdout, new RegExp(`^State +paused \\(${where}\\)$`, 'm'));
      const got = await api(full, 'GET', `/sandboxes/${s.sbx.sandboxId}`);
      assert.equal(got.json.pausedTo, where);
      const listed = await api(full, 'GET', '/v2/sandboxes?state=paused');
      assert.equal(listed.json.find((x) => x.sandboxID === s.sbx.sandboxId).pausedTo, where);
    };
    await shown('memory');
    r = await cli('sandbox', 'evict', s.sbx.sandboxId);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /evicted to disk/);
    assert.ok(onDisk(full, s.sbx.sandboxId));
    await shown('disk');
    assert.equal(await evicted(full, 'operator'), 1);
    assert.equal((await cli('sandbox', 'evict', s.sbx.sandboxId)).code, 1, 'already on disk');
    assert.equal((await cli('sandbox', 'evict', 'inosuchsandbox')).code, 1);
    assert.equal((await api(full, 'POST', `/admin/sandboxes/${s.sbx.sandboxId}/evict`)).status, 404,
      'an admin route: not on the API port');
    await s.sbx.connect();
    await assertRebooted(s.sbx, s);
    assert.equal((await api(full, 'GET', `/sandboxes/${s.sbx.sandboxId}`)).json.pausedTo, undefined, 'running');
    r = await cli('node');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^eviction +paused sandboxes move to disk: never for idleness; .*when the node is full$/m);
    const node = JSON.parse((await cli('node', '--json')).stdout);
    assert.equal(node.eviction.idleSeconds, 0);
    assert.equal(node.eviction.capPercent, 90);
  } finally {
    await kill(full, s.sbx.sandboxId);
  }
});

ctest(tight, 'memory pressure: above the cap share, the paused sandbox moves to disk and the running one stays', { timeout: 120_000 }, async () => {
  const a = await prepare(tight);
  let b = null;
  try {
    // 300 MB in a's writable layer (memory-backed, charged to the sandboxes' cgroup): 30 % of the cap.
    await a.sbx.commands.run('head -c 300M /dev/zero > /home/user/fill', { timeoutMs: 60_000 });
    a.want = await sums(a.sbx);
    assert.equal(await a.sbx.pause(), true);
    await new Promise((r) => setTimeout(r, 2_500)); // a few policy ticks below the threshold
    assert.ok(!onDisk(tight, a.sbx.sandboxId), 'evicted without pressure');
    b = await Sandbox.create('evstart', { ...tight.sdkOpts, timeoutMs: 120_000 });
    await b.commands.run('head -c 300M /dev/zero > /home/user/fill', { timeoutMs: 60_000 }); // now ~60 %
    assert.ok(await waitFor(() => onDisk(tight, a.sbx.sandboxId), 20_000), 'not evicted under memory pressure');
    assert.ok(await waitFor(() => evicted(tight, 'memory pressure').then((n) => n === 1), 10_000));
    assert.equal((await b.commands.run('echo alive')).stdout, 'alive\n', 'a running sandbox is never evicted');
    await b.kill();
    b = null;
    await a.sbx.connect();
    await assertRebooted(a.sbx, a);
  } finally {
    await Promise.all([a.sbx.sandboxId, b?.sandboxId].filter(Boolean).map((id) => kill(tight, id)));
  }
});

ctest(full, 'kill -9 of cubed in the middle of an eviction: paused in memory or on disk, no half copy, files intact', { timeout: 180_000 }, async (t) => {
  for (const delayMs of [5, 40, 150]) {
    const a = await prepare(full);
    await a.sbx.commands.run('head -c 64M /dev/urandom > /home/user/big.bin');
    a.want = await sums(a.sbx);
    const b = await Sandbox.create('evstart', { ...full.sdkOpts, timeoutMs: 120_000 });
    assert.equal(await a.sbx.pause(), true);
    // The node is full: this create evicts a, and cubed dies while a's files are being copied.
    const pending = api(full, 'POST', '/sandboxes', { body: { templateID: 'evstart', timeout: 120 } }).catch(() => null);
    await new Promise((r) => setTimeout(r, delayMs));
    await full.kill9();
    await pending;
    await full.restart();
    const info = await api(full, 'GET', `/sandboxes/${a.sbx.sandboxId}`);
    assert.equal(info.status, 200, 'the sandbox survives');
    assert.equal(info.json.state, 'paused');
    const dir = path.join(full.stateDir, 'disk', a.sbx.sandboxId);
    const left = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    assert.ok(!left.some((n) => n.startsWith('.')), `scratch left: ${left}`);
    t.diagnostic(`kill -9 after ${delayMs} ms: ${left.length ? 'on disk' : 'in memory'}`);
    // Make room (a boot from disk needs a slot), then connect: every file is there.
    const others = (await api(full, 'GET', '/v2/sandboxes?state=running')).json.map((s) => s.sandboxID);
    await Promise.all(others.map((id) => kill(full, id)));
    await a.sbx.connect();
    assert.equal(await sums(a.sbx), a.want);
    await kill(full, a.sbx.sandboxId);
    await kill(full, b.sandboxId);
  }
});
