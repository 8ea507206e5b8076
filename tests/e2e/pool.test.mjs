// The pre-warmed pool: settings through cubemastercli and the admin API (validated, persisted across a
// restart), background refill, claims that are indistinguishable from a cold create from inside and
// outside the sandbox, no env or token of one request in the next sandbox, and the pool staying
// inside the node's admission limit.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Cubed, ctest, forEachSdk, run, bin, api, dataRequest, accessToken, waitFor } from './harness.mjs';
import { before, after } from 'node:test';

const c = new Cubed();
const small = new Cubed({ extraArgs: ['--max-sandboxes', '3'] });
before(async () => { await c.start(); await small.start(); }, { timeout: 90_000 });
after(async () => { await c.stop(); await small.stop(); }, { timeout: 90_000 });

const cli = (inst, ...args) => run(bin.cli, ['--socket', inst.socket, ...args], { timeoutMs: 15_000 });
async function poolGet(inst, tpl = 'base') {
  const r = await cli(inst, '--json', 'pool', 'get', tpl);
  assert.equal(r.code, 0, `pool get: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
async function poolSet(inst, min, max, tpl = 'base') {
  const r = await cli(inst, '--json', 'pool', 'set', tpl, '--min', String(min), '--max', String(max));
  assert.equal(r.code, 0, `pool set: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout);
}
async function waitIdle(inst, n, tpl = 'base') {
  const p = await waitFor(async () => { const g = await poolGet(inst, tpl); return g.idle === n && g.warming === 0 ? g : null; }, 30_000);
  assert.ok(p, `pool ${tpl} did not reach ${n} idle: ${JSON.stringify(await poolGet(inst, tpl))}`);
  return p;
}
// Freezer state of every sandbox cgroup of an instance: {id: frozen?} (cgroup v2 or the v1 freezer).
function freezerStates(inst) {
  const instance = fs.readFileSync(path.join(inst.stateDir, 'instance-id'), 'utf8').trim();
  const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
  const base = v2 ? `/sys/fs/cgroup/cubesandbox/${instance}` : `/sys/fs/cgroup/freezer/cubesandbox/${instance}`;
  const out = {};
  for (const e of fs.readdirSync(base, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const f = path.join(base, e.name, v2 ? 'cgroup.freeze' : 'freezer.state');
    out[e.name] = fs.readFileSync(f, 'utf8').trim() === (v2 ? '1' : 'FROZEN');
  }
  return out;
}

async function metric(inst, name, labels = '') {
  const text = await (await fetch(`${inst.apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

ctest(c, 'settings: CLI and admin API, validation, refill, persisted across a restart', async () => {
  const off = await poolGet(c);
  assert.equal(off.max, 0, 'no pool unless configured');
  assert.equal(off.idle, 0);
  const set = await poolSet(c, 2, 3);
  assert.equal(set.min, 2);
  assert.equal(set.max, 3);
  await waitIdle(c, 2);
  const human = await cli(c, 'pool', 'list');
  assert.equal(human.code, 0);
  assert.match(human.stdout, /^TEMPLATE\s+MIN\s+MAX\s+TARGET\s+IDLE/m);
  assert.match(human.stdout, /^base\s+2\s+3\s+/m);
  assert.equal(await metric(c, 'cube_pool_idle', 'template="base"'), 2);
  assert.equal(await metric(c, 'cube_sandboxes', 'state="pooled"'), 2);
  // Pooled sandboxes are not sandboxes of any client: not listed. They are frozen while idle.
  assert.deepEqual((await api(c, 'GET', '/v2/sandboxes')).json, []);
  const states = freezerStates(c);
  assert.equal(Object.keys(states).length, 2, JSON.stringify(states));
  assert.ok(Object.values(states).every(Boolean), `pooled sandboxes frozen: ${JSON.stringify(states)}`);

  // Validation (admin socket is the only way in; the TCP API does not have the route).
  assert.notEqual((await cli(c, 'pool', 'set', 'base', '--min', '3', '--max', '1')).code, 0);
  const bad = await cli(c, 'pool', 'set', 'no-such-template', '--max', '1');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /404|not found/);
  assert.equal((await api(c, 'PUT', '/admin/pool', { body: { templateID: 'base', min: 0, max: 1 } })).status, 404);
  assert.equal((await api(c, 'GET', '/admin/pool')).status, 404);

  await c.restart();
  const again = await waitIdle(c, 2);
  assert.equal(again.min, 2);
  assert.equal(again.max, 3);
});

// Everything a sandbox shows that does not depend on uptime or its id.
async function inside(sbx) {
  const r = await sbx.commands.run([
    'echo "host=$(hostname)"', 'echo "etc=$(cat /etc/hostname)"', 'echo "cmd=$(tr "\\0" " " </proc/1/cmdline)"',
    'echo "user=$(id)"', 'echo "pwd=$(pwd)"', 'echo "tmp=$(ls -A /tmp | wc -l)"',
    // every process but this command's own (pipelines race, so list by cmdline and drop ours)
    'echo "procs=$(for p in /proc/[0-9]*; do tr "\\0" " " <$p/cmdline 2>/dev/null; echo; done | grep -v -e "^/bin/bash -l -c" -e "^tr " -e "^grep " -e "^sort " -e "^ *$" | sort | tr "\\n" ";")"',
    'echo "envkeys=$(env | cut -d= -f1 | sort | tr "\\n" " ")"', 'echo "foo=$FOO"', 'echo "id=$E2B_SANDBOX_ID"', 'echo "tpl=$E2B_TEMPLATE_ID"',
    'echo "mounts=$(wc -l </proc/self/mountinfo)"',
  ].join('; '));
  assert.equal(r.exitCode, 0, r.stderr);
  return Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function outside(info, id) {
  const o = { ...info };
  assert.equal(o.sandboxId, id);
  const ttl = o.endAt.getTime() - o.startedAt.getTime();
  delete o.sandboxId; delete o.startedAt; delete o.endAt; delete o.envdAccessToken;
  return { ...o, ttlRounded: Math.round(ttl / 1000) };
}

forEachSdk(c, 'a claimed sandbox and a cold one look the same inside and out', async ({ create }) => {
  await poolSet(c, 1, 1);
  await waitIdle(c, 1);
  const run1 = randomBytes(4).toString('hex');
  const opts = { metadata: { run: run1, kind: 'same' }, envs: { FOO: `v-${run1}` }, timeoutMs: 90_000 };
  const hits0 = await metric(c, 'cube_pool_hits_total', 'template="base"');
  const warm = await create('base', opts);
  assert.equal(await metric(c, 'cube_pool_hits_total', 'template="base"'), hits0 + 1, 'served from the pool');
  await poolSet(c, 0, 0);
  await waitIdle(c, 0);
  const misses0 = await metric(c, 'cube_pool_misses_total', 'template="base"');
  const cold = await create('base', opts);
  assert.equal(await metric(c, 'cube_pool_misses_total', 'template="base"'), misses0 + 1, 'booted cold');

  const [iw, ic] = [await inside(warm), await inside(cold)];
  assert.equal(iw.host, warm.sandboxId);
  assert.equal(ic.host, cold.sandboxId);
  assert.equal(iw.id, warm.sandboxId);
  assert.equal(iw.foo, `v-${run1}`);
  for (const k of ['host', 'etc']) { iw[k] = iw[k].replace(warm.sandboxId, 'ID'); ic[k] = ic[k].replace(cold.sandboxId, 'ID'); }
  iw.id = ic.id = 'ID';
  assert.deepEqual(iw, ic);

  const [ow, oc] = [outside(await warm.getInfo(), warm.sandboxId), outside(await cold.getInfo(), cold.sandboxId)];
  assert.deepEqual(ow, oc);
  assert.deepEqual(ow.metadata, opts.metadata);
  assert.equal(freezerStates(c)[warm.sandboxId], false, 'a claimed sandbox runs');
  assert.equal(ow.ttlRounded, 90);
  // Both enforce their own access token on the data plane when the SDK made them secure.
  for (const s of [warm, cold]) {
    const tok = accessToken(s);
    if (!tok) continue;
    const r = await dataRequest(c, { sandboxId: s.sandboxId, path: '/envs' });
    assert.equal(r.status, 401, 'no token, no access');
    const ok = await dataRequest(c, { sandboxId: s.sandboxId, path: '/envs', headers: { 'X-Access-Token': tok } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.FOO, `v-${run1}`);
  }
});

forEachSdk(c, 'pooled sandboxes carry nothing of earlier requests', async ({ create }) => {
  await poolSet(c, 2, 2);
  await waitIdle(c, 2);
  const secret = randomBytes(8).toString('hex');
  const first = await create('base', { envs: { SECRET: secret }, metadata: { who: 'first' } });
  const second = await create('base', { metadata: { who: 'second' } });
  const third = await create('base', { envs: { OTHER: '1' } }); // after refill, or cold: either way clean
  for (const s of [second, third]) {
    const env = await s.commands.run('env');
    assert.ok(!env.stdout.includes(secret), 'no env of another request');
    assert.doesNotMatch(env.stdout, /^SECRET=/m);
    assert.deepEqual((await s.getInfo()).metadata, s === second ? { who: 'second' } : {});
  }
  const t1 = accessToken(first), t2 = accessToken(second);
  if (t1 && t2) {
    assert.notEqual(t1, t2);
    const r = await dataRequest(c, { sandboxId: second.sandboxId, path: '/envs', headers: { 'X-Access-Token': t1 } });
    assert.equal(r.status, 401, "another sandbox's token is refused");
  }
  // The claim route is gone once claimed: nobody inside or outside can re-configure envd.
  for (const s of [first, second]) {
    const tok = accessToken(s);
    const r = await dataRequest(c, { sandboxId: s.sandboxId, method: 'POST', path: '/_cube/claim',
      headers: { 'X-Cube-Claim-Key': 'x'.repeat(48), 'Content-Type': 'application/json', ...(tok ? { 'X-Access-Token': tok } : {}) },
      body: JSON.stringify({ envVars: { SECRET: 'replaced' } }) });
    assert.equal(r.status, 404);
    const env = await s.commands.run('printenv SECRET || true');
    assert.notEqual(env.stdout.trim(), 'replaced');
  }
  await poolSet(c, 0, 0);
});

ctest(small, 'the pool stays inside the node limit and never takes the last slot', async () => {
  // max must stay below the node limit
  assert.notEqual((await cli(small, 'pool', 'set', 'base', '--max', '3')).code, 0);
  await poolSet(small, 2, 2);
  await waitIdle(small, 2);
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const r = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 60 } });
    assert.equal(r.status, 201, r.text);
    ids.push(r.json.sandboxID);
    assert.ok(await metric(small, 'cube_admission_slots_used') <= 3);
  }
  const full = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base' } });
  assert.equal(full.status, 429);
  assert.match(full.headers.get('retry-after') ?? '', /^\d+$/);
  // No refill while full.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await poolGet(small)).idle, 0);
  for (const id of ids) assert.equal((await api(small, 'DELETE', `/sandboxes/${id}`)).status, 204);
  // Room again: the pool refills up to its target, leaving a slot free.
  await waitIdle(small, 2);
  await poolSet(small, 0, 0);
});

ctest(small, 'a full node gives up idle pooled sandboxes for a create the pool cannot serve', async () => {
  await poolSet(small, 2, 2);
  await waitIdle(small, 2); // 2 of the 3 slots
  const ids = [];
  const mk = async (body) => {
    const r = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 60, ...body } });
    assert.equal(r.status, 201, r.text);
    ids.push(r.json.sandboxID);
  };
  await mk({}); // a claim: 1 idle left, slots 2/3
  // allowPublicTraffic=false never comes from the pool: these boot cold
  await mk({ network: { allowPublicTraffic: false } }); // slots 3/3
  await mk({ network: { allowPublicTraffic: false } }); // full: the idle pooled sandbox is evicted for it
  assert.equal((await poolGet(small)).idle, 0);
  const full = await api(small, 'POST', '/v2/sandboxes', { body: { templateID: 'base', network: { allowPublicTraffic: false } } });
  assert.equal(full.status, 429, 'nothing left to evict');
  for (const id of ids) assert.equal((await api(small, 'DELETE', `/sandboxes/${id}`)).status, 204);
  await poolSet(small, 0, 0);
});

ctest(c, 'the pool follows the claim rate between min and max', async () => {
  const f = new Cubed(); // fresh: no claim rate left over from the tests above
  await f.start();
  try {
    await poolSet(f, 0, 6);
    const g0 = await poolGet(f);
    assert.equal(g0.target, 0, 'no claims yet: nothing pre-booted');
    assert.equal(g0.idle + g0.warming, 0);
    for (let i = 0; i < 6; i++) {
      const r = await api(f, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 60 } });
      assert.equal(r.status, 201, r.text);
    }
    // misses raise the claim rate; within a rate window or two the target follows and the pool boots
    const g = await waitFor(async () => { const p = await poolGet(f); return p.target > 0 && p.idle > 0 ? p : null; }, 10_000, 100);
    assert.ok(g, `target never rose: ${JSON.stringify(await poolGet(f))}`);
    assert.ok(g.target <= 6 && g.claimsPerSecond > 0, JSON.stringify(g));
    assert.equal(g.misses, 6);
  } finally {
    await f.stop();
  }
});
