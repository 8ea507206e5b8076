// Pooled sandboxes obey the claiming request's egress policy from the first packet (a peer shipped
// pooled sandboxes that ignored it): the policy is replaced before the create call returns, against a
// fake internet in namespaces this test creates (fakenet.mjs).

import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import { Cubed, forEachSdk, api, run, bin, waitFor } from './harness.mjs';
import { FakeInternet, ADDR, PORTS, probe } from './fakenet.mjs';

const inet = new FakeInternet();
const c = new Cubed({ extraArgs: inet.cubedArgs() });
// cubed starts after the fake internet exists, and stops before it goes
before(async () => { await inet.start(); await c.start(); }, { timeout: 90_000 });
after(async () => { try { await c.stop(); } finally { await inet.stop(); } }, { timeout: 90_000 });

const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args], { timeoutMs: 15_000 });
async function poolReady(n) {
  const r = await cli('--json', 'pool', 'set', 'base', '--min', String(n), '--max', String(n));
  assert.equal(r.code, 0, r.stderr);
  const ok = await waitFor(async () => {
    const g = JSON.parse((await cli('--json', 'pool', 'get', 'base')).stdout);
    return g.idle === n && g.warming === 0;
  }, 30_000);
  assert.ok(ok, 'pool did not fill');
}
async function hits() {
  const text = await (await fetch(`${c.apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('cube_pool_hits_total{template="base"} '));
  return line ? Number(line.split(' ')[1]) : 0;
}
const ok = (r, k) => assert.ok(r[k]?.ok, `${k} should be reachable, got ${JSON.stringify(r[k])}`);
const blocked = (r, k) => assert.ok(r[k] && !r[k].ok, `${k} should be blocked, got ${JSON.stringify(r[k])}`);

forEachSdk(c, 'a claimed sandbox has exactly the request\'s egress policy', { timeout: 180_000 }, async ({ create }) => {
  await poolReady(2);
  const h0 = await hits();
  const closed = await create({ allowInternetAccess: false, network: { allowOut: ['*.example.test'] } });
  const open = await create();
  assert.equal(await hits(), h0 + 2, 'both came from the pool');
  const rc = await probe(closed, {
    api80: ['tcp', 'api.example.test', PORTS.http], byIp: ['tcp', ADDR.other, PORTS.http],
    other: ['tcp', 'other.test', PORTS.http], metadata: ['tcp', ADDR.metadata, PORTS.http],
  });
  ok(rc, 'api80');
  for (const k of ['byIp', 'other', 'metadata']) blocked(rc, k);
  const ro = await probe(open, { web: ['tcp', ADDR.web, PORTS.http], metadata: ['tcp', ADDR.metadata, PORTS.http] });
  ok(ro, 'web');
  blocked(ro, 'metadata');
  const n = await api(c, 'GET', `/sandboxes/${closed.sandboxId}/network`);
  assert.equal(n.status, 200, n.text);
  assert.deepEqual(n.json.allowOut, ['*.example.test']);
  assert.equal((await closed.getInfo()).allowInternetAccess, false);
  await cli('pool', 'set', 'base', '--max', '0');
});

forEachSdk(c, 'allowPublicTraffic=false is never served from the pool (its token is made at boot)', async ({ create }) => {
  await poolReady(1);
  const h0 = await hits();
  const priv = await create({ network: { allowPublicTraffic: false } });
  assert.equal(await hits(), h0, 'booted cold');
  assert.ok(priv.trafficAccessToken, 'a traffic token was issued');
  await cli('pool', 'set', 'base', '--max', '0');
});
