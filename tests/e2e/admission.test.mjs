// Node admission: a count limit and a host-memory floor. When the node is full, create answers 429 with
// an integer Retry-After and the JSON error body, nothing is started, and a freed slot is usable again.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Cubed, ctest, api, forEachSdk, loadSdk } from './harness.mjs';
import { before, after } from 'node:test';

const small = new Cubed({ extraArgs: ['--max-sandboxes', '2'] });
const lowMem = new Cubed({ extraArgs: ['--memory-reserve-mb', '100000000'] });
before(async () => { await small.start(); await lowMem.start(); }, { timeout: 90_000 });
after(async () => { await small.stop(); await lowMem.stop(); }, { timeout: 90_000 });

function assert429(r, what) {
  assert.equal(r.status, 429, `${what}: ${r.status} ${r.text}`);
  assert.match(r.headers.get('retry-after') ?? '', /^\d+$/, `${what}: Retry-After must be an integer`);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(r.json?.code, 429, `${what}: body ${r.text}`);
  assert.equal(typeof r.json.message, 'string');
}

ctest(small, 'count limit: the third sandbox is refused with 429 until one is killed', async () => {
  const a = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 60 } });
  const b = await api(small, 'POST', '/sandboxes', { body: { templateID: 'base', timeout: 60 } });
  assert.equal(a.status, 201, a.text);
  assert.equal(b.status, 201, b.text);
  for (const p of ['/v2/sandboxes', '/sandboxes']) {
    const r = await api(small, 'POST', p, { body: { templateID: 'base', timeout: 60 } });
    assert429(r, p);
    assert.match(r.json.message, /full|limit/i);
  }
  // Refused creates started nothing.
  const list = await api(small, 'GET', '/v2/sandboxes');
  assert.equal(list.json.length, 2);
  assert.equal((await api(small, 'DELETE', `/sandboxes/${a.json.sandboxID}`)).status, 204);
  const c = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 60 } });
  assert.equal(c.status, 201, c.text);
  await api(small, 'DELETE', `/sandboxes/${b.json.sandboxID}`);
  await api(small, 'DELETE', `/sandboxes/${c.json.sandboxID}`);
});

ctest(lowMem, 'memory floor: create is refused with 429 while MemAvailable is below the reserve', async () => {
  const r = await api(lowMem, 'POST', '/v2/sandboxes', { body: { templateID: 'base' } });
  assert429(r, 'low memory');
  assert.match(r.json.message, /memory/i);
  assert.equal((await api(lowMem, 'GET', '/v2/sandboxes')).json.length, 0);
});

forEachSdk(small, 'the SDK sees the refusal as an error, not a hang', async ({ create }) => {
  const a = await create({ timeoutMs: 60_000 });
  const b = await create({ timeoutMs: 60_000 });
  // Both SDK versions fail the call (2.51 after honouring Retry-After once); neither returns a sandbox.
  await assert.rejects(create({ timeoutMs: 60_000 }), (e) => /429|full|limit|rate/i.test(String(e?.message ?? e)));
  await a.kill();
  await b.kill();
});

// All sandboxes together are capped below the host's memory by the kernel: a sandbox that grows past the
// node's cap (but within its own 512 MB) is OOM-killed inside, and the node, cubed and the sandbox survive.
const capped = new Cubed({ extraArgs: ['--sandboxes-memory-mb', '300'] });
before(async () => { await capped.start(); }, { timeout: 90_000 });
after(async () => { await capped.stop(); }, { timeout: 90_000 });

ctest(capped, 'the node memory cap stops a sandbox that grows past it; nothing else is hurt', async () => {
  const instance = fs.readFileSync(path.join(capped.stateDir, 'instance-id'), 'utf8').trim();
  const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
  const f = v2 ? `/sys/fs/cgroup/cubesandbox/${instance}/memory.max` : `/sys/fs/cgroup/memory/cubesandbox/${instance}/memory.limit_in_bytes`;
  assert.equal(Number(fs.readFileSync(f, 'utf8').trim()), 300 * 1024 * 1024);
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...capped.sdkOpts });
  try {
    const r = await sbx.commands.run('python3 -c "a = bytearray(400 * 1024 * 1024); print(len(a))"').catch((e) => e);
    assert.notEqual(r.exitCode, 0, 'a 400 MB allocation under a 300 MB node cap must fail');
    const ok = await sbx.commands.run('echo alive');
    assert.equal(ok.stdout, 'alive\n');
    assert.equal((await api(capped, 'GET', `/sandboxes/${sbx.sandboxId}`)).status, 200);
  } finally {
    await sbx.kill();
  }
});
