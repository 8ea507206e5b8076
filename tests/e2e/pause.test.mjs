// Pause and resume with memory kept (cgroup freezer), through the unmodified SDK: processes and files are
// unchanged after resume, a paused sandbox uses no CPU, repeated cycles keep files intact, pausing twice is
// refused, lifecycle auto-pause at timeout plus auto-resume on proxy traffic, and a paused sandbox stays
// paused (and resumable) across a kill -9 of cubed.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, forEachSdk, ctest, loadSdk, api, dataRequest, accessToken, waitFor, sleep, sha256, run, bin, hostPids, readProc } from './harness.mjs';

const c = useCubed();

// CPU time (ns) the sandbox's cgroup has used: v1 cpuacct.usage, or v2 cpu.stat usage_usec.
function cpuNs(id) {
  const instance = fs.readFileSync(path.join(c.stateDir, 'instance-id'), 'utf8').trim();
  const v1 = `/sys/fs/cgroup/cpuacct/cubesandbox/${instance}/${id}/cpuacct.usage`;
  if (fs.existsSync(v1)) return BigInt(fs.readFileSync(v1, 'utf8').trim());
  const stat = fs.readFileSync(`/sys/fs/cgroup/cubesandbox/${instance}/${id}/cpu.stat`, 'utf8');
  return BigInt(/usage_usec (\d+)/.exec(stat)[1]) * 1000n;
}

// A background counter (one tick every 50 ms, written atomically) and a few files of known content.
async function prepare(sbx) {
  const files = { '/home/user/small.txt': Buffer.from('hello pause\n'), '/tmp/blob.bin': randomBytes(1 << 20),
    '/home/user/dir/nested.bin': randomBytes(4096) };
  for (const [p, data] of Object.entries(files)) await sbx.files.write(p, data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
  const counter = await sbx.commands.run(
    'i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.05; done',
    { background: true, timeoutMs: 0 });
  await waitFor(async () => Number((await sbx.commands.run('cat /tmp/count 2>/dev/null || echo 0')).stdout) > 0, 10_000);
  const want = Object.fromEntries(Object.entries(files).map(([p, d]) => [p, sha256(d)]));
  return { counter, want };
}

async function checksums(sbx, want) {
  const r = await sbx.commands.run(`sha256sum ${Object.keys(want).join(' ')}`);
  const got = Object.fromEntries(r.stdout.trim().split('\n').map((l) => { const [h, p] = l.split(/\s+/); return [p, h]; }));
  assert.deepEqual(got, want, 'file checksums changed across pause/resume');
}

const count = async (sbx) => Number((await sbx.commands.run('cat /tmp/count')).stdout);

async function listed(Sandbox, state) {
  const pager = Sandbox.list({ ...c.sdkOpts, query: { state: [state] } });
  const all = [];
  while (pager.hasNext && all.length < 1000) all.push(...await pager.nextItems());
  return all;
}

forEachSdk(c, 'pause freezes processes (no CPU), keeps files; connect resumes where it stopped', async ({ create, Sandbox }) => {
  const sbx = await create();
  const { counter, want } = await prepare(sbx);
  const before = await count(sbx);
  assert.equal(await sbx.pause(), true);

  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.equal(info.state, 'paused');
  assert.ok((await listed(Sandbox, 'paused')).some((s) => s.sandboxId === sbx.sandboxId), 'paused sandbox not listed as paused');
  assert.ok(!(await listed(Sandbox, 'running')).some((s) => s.sandboxId === sbx.sandboxId), 'paused sandbox listed as running');

  // No CPU while paused: the counter loop would otherwise run 20 times a second.
  const cpu0 = cpuNs(sbx.sandboxId);
  await sleep(1_000);
  const cpu1 = cpuNs(sbx.sandboxId);
  assert.ok(cpu1 - cpu0 < 2_000_000n, `a paused sandbox used ${cpu1 - cpu0} ns of CPU in 1 s`);

  // The data plane refuses a paused sandbox without autoResume (502, as for a missing one).
  const r = await dataRequest(c, { sandboxId: sbx.sandboxId, path: '/health' });
  assert.equal(r.status, 502);

  const again = await Sandbox.connect(sbx.sandboxId, c.sdkOpts);
  assert.equal(accessToken(again), accessToken(sbx), 'envdAccessToken changed across pause');
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'running');
  const after = await count(sbx);
  assert.ok(after - before <= 10, `the counter ran while paused (${before} -> ${after})`);
  await checksums(sbx, want);
  assert.ok((await sbx.commands.list()).some((p) => p.pid === counter.pid), 'background process lost');
  assert.ok(await waitFor(async () => (await count(sbx)) > after, 5_000), 'the counter does not run after resume');
  assert.ok(cpuNs(sbx.sandboxId) > cpu1);
});

forEachSdk(c, 'five pause -> connect cycles keep processes and files; pausing twice is refused', async ({ create }) => {
  const sbx = await create();
  const { counter, want } = await prepare(sbx);
  for (let i = 0; i < 5; i++) {
    await sbx.files.write(`/home/user/cycle-${i}.txt`, `cycle ${i}\n`);
    want[`/home/user/cycle-${i}.txt`] = sha256(Buffer.from(`cycle ${i}\n`));
    assert.equal(await sbx.pause(), true, `pause #${i + 1}`);
    assert.equal(await sbx.pause(), false, 'a second pause must answer 409 (SDK: false)');
    await sbx.connect();
    await checksums(sbx, want);
    assert.ok((await sbx.commands.list()).some((p) => p.pid === counter.pid), `background process lost in cycle ${i + 1}`);
  }
  const r = await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: {} });
  assert.equal(r.status, 204);
  const twice = await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: {} });
  assert.equal(twice.status, 409);
  assert.match(twice.json.message, /already paused/);
  // The deprecated resume: 201 when paused, 409 when running.
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/resume`, { body: { timeout: 60 } })).status, 201);
  assert.equal((await api(c, 'POST', `/sandboxes/${sbx.sandboxId}/resume`, { body: {} })).status, 409);
  // connect on a running sandbox only extends it (200).
  assert.equal((await api(c, 'POST', `/v2/sandboxes/${sbx.sandboxId}/connect`, { body: {} })).status, 200);
  assert.equal((await api(c, 'POST', '/sandboxes/inosuchsandbox/pause', { body: {} })).status, 404);
  await checksums(sbx, want);
});

forEachSdk(c, 'autoPause at timeout, then a proxied request resumes the sandbox and succeeds', async ({ create, Sandbox }) => {
  const sbx = await create({ timeoutMs: 3_000, lifecycle: { onTimeout: 'pause', autoResume: true } });
  const { want } = await prepare(sbx);
  const info = await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
  assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true });
  assert.ok(await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state === 'paused', 15_000),
    'the sandbox was not paused at its timeout');
  // Not killed: still listed, as paused.
  assert.ok((await listed(Sandbox, 'paused')).some((s) => s.sandboxId === sbx.sandboxId));
  // A plain data-plane request wakes it and gets envd's answer.
  const r = await dataRequest(c, { sandboxId: sbx.sandboxId, path: '/health' });
  assert.ok(r.status === 204 || r.status === 200, `request to an auto-resumed sandbox answered ${r.status}: ${r.text}`);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'running');
  await checksums(sbx, want); // SDK traffic (envd RPCs) works too
});

forEachSdk(c, 'onTimeout pause without autoResume: paused at timeout, proxy answers 502, connect resumes', async ({ create, Sandbox }) => {
  const sbx = await create({ timeoutMs: 2_000, lifecycle: { onTimeout: 'pause' } });
  const { want } = await prepare(sbx);
  assert.ok(await waitFor(async () => (await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state === 'paused', 15_000));
  assert.equal((await dataRequest(c, { sandboxId: sbx.sandboxId, path: '/health' })).status, 502);
  await sbx.connect({ timeoutMs: 60_000 });
  await checksums(sbx, want);
});

ctest(c, 'a kill while a pause is in flight wins: no process stays, the pause answers 404 or had finished', { timeout: 120_000 }, async (t) => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const pidsOf = (id) => hostPids().filter((p) => (readProc(p, 'cgroup') || '').includes(id));
  const seen = new Set();
  for (let i = 0; i < 12; i++) {
    const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 60_000 });
    await sbx.commands.run('for i in 1 2 3 4; do sleep 600 </dev/null >/dev/null 2>&1 & done');
    const [p, d] = await Promise.all([api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: {} }),
      sleep(i % 2).then(() => api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`))]);
    assert.equal(d.status, 204, d.text);
    assert.ok(p.status === 204 || p.status === 404, `pause answered ${p.status}: ${p.text}`);
    seen.add(p.status);
    assert.ok(await waitFor(() => pidsOf(sbx.sandboxId).length === 0, 10_000), `processes of ${sbx.sandboxId} stay`);
    assert.equal((await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`)).status, 404);
  }
  t.diagnostic(`pause answers seen: ${[...seen]}`);
});

ctest(c, 'concurrent pauses: exactly one is answered 204, the others 409', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, timeoutMs: 60_000 });
  try {
    // The freeze runs in a worker; requests arriving meanwhile see a sandbox being paused.
    const rs = await Promise.all([...Array(6)].map(() => api(c, 'POST', `/sandboxes/${sbx.sandboxId}/pause`, { body: {} })));
    assert.deepEqual(rs.map((r) => r.status).sort(), [204, 409, 409, 409, 409, 409]);
    for (const r of rs.filter((x) => x.status === 409)) assert.match(r.json.message, /already (being )?paused/);
    assert.equal((await Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'paused');
    await sbx.connect();
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
  } finally {
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`).catch(() => null);
  }
});

ctest(c, 'a paused sandbox stays paused across kill -9 of cubed and resumes fine', { timeout: 180_000 }, async () => {
  const sdk = await loadSdk('e2b-2.51');
  const sbx = await sdk.Sandbox.create(c.sdkOpts);
  try {
    const { counter, want } = await prepare(sbx);
    const before = await count(sbx);
    assert.equal(await sbx.pause(), true);
    await c.kill9();
    await sleep(500);
    await c.restart();
    const info = await sdk.Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
    assert.equal(info.state, 'paused');
    assert.ok((await listed(sdk.Sandbox, 'paused')).some((s) => s.sandboxId === sbx.sandboxId), 'not listed after restart');
    const cpu0 = cpuNs(sbx.sandboxId);
    await sleep(500);
    assert.ok(cpuNs(sbx.sandboxId) - cpu0 < 2_000_000n, 'the sandbox runs after the restart although it is paused');
    await sbx.connect();
    assert.ok((await count(sbx)) - before <= 10);
    await checksums(sbx, want);
    assert.ok((await sbx.commands.list()).some((p) => p.pid === counter.pid), 'background process lost');
    // Pause again and kill it while paused: it goes away completely.
    assert.equal(await sbx.pause(), true);
    assert.equal(await sdk.Sandbox.kill(sbx.sandboxId, c.sdkOpts), true);
    await assert.rejects(sdk.Sandbox.getInfo(sbx.sandboxId, c.sdkOpts), sdk.SandboxNotFoundError);
  } finally {
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`).catch(() => null);
  }
});

ctest(c, 'cubemastercli sandbox pause and resume', async () => {
  const sdk = await loadSdk('e2b-2.51');
  const sbx = await sdk.Sandbox.create(c.sdkOpts);
  const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args]);
  try {
    let r = await cli('sandbox', 'pause', sbx.sandboxId);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${sbx.sandboxId} paused\n`);
    assert.equal((await sdk.Sandbox.getInfo(sbx.sandboxId, c.sdkOpts)).state, 'paused');
    r = await cli('sandbox', 'pause', sbx.sandboxId);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /409: .*already paused/);
    r = await cli('--json', 'sandbox', 'resume', sbx.sandboxId, '--timeout', '120');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { resumed: [sbx.sandboxId] });
    const info = await sdk.Sandbox.getInfo(sbx.sandboxId, c.sdkOpts);
    assert.equal(info.state, 'running');
    assert.ok(info.endAt.getTime() > Date.now() + 100_000);
    r = await cli('sandbox', 'resume', sbx.sandboxId);
    assert.equal(r.stdout, `${sbx.sandboxId} was running; timeout extended\n`);
    r = await cli('sandbox', 'pause', 'inosuchsandbox');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /404/);
    assert.equal((await cli('sandbox', 'frobnicate', sbx.sandboxId)).code, 2);
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n');
  } finally {
    await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`).catch(() => null);
  }
});
