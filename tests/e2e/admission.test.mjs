// Node admission: a count limit and a host-memory floor. When the node is full, create answers 429 with
// an integer Retry-After and the JSON error body, nothing is started, and a freed slot is usable again.

import assert from 'node:assert/strict';
import { Cubed, ctest, api, forEachSdk } from './harness.mjs';
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
