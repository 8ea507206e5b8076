// kill -9 of cubed with sandboxes running, then restart on the same state dir: the list is truthful, alive
// sandboxes are adopted and keep working, dead or expired ones are reclaimed, and after killing everything
// nothing leaks (processes in cgroups, cgroup dirs, mounts, network namespaces, links).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { useCubed, ctest, loadSdk, api, waitFor, sleep, netnsInodes } from './harness.mjs';

const c = useCubed();

// Every cgroup directory of this instance: /sys/fs/cgroup/<ctrl>/cubesandbox/<instance> (v1/hybrid) and
// /sys/fs/cgroup[/unified]/cubesandbox/<instance> (v2).
function instanceRoots(instance) {
  const roots = [];
  const base = '/sys/fs/cgroup';
  const cands = [path.join(base, 'cubesandbox', instance)];
  for (const d of fs.readdirSync(base)) cands.push(path.join(base, d, 'cubesandbox', instance));
  for (const p of cands) if (fs.existsSync(p)) roots.push(p);
  return roots;
}

function walkDirs(root) {
  const out = [];
  const stack = [root];
  while (stack.length) {
    const d = stack.pop();
    out.push(d);
    let ents = [];
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { continue; }
    for (const e of ents) if (e.isDirectory()) stack.push(path.join(d, e.name));
  }
  return out;
}

function procsIn(dir) {
  try { return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number); } catch { return []; }
}

function cgroupState(instance) {
  const dirs = instanceRoots(instance).flatMap(walkDirs);
  const pids = new Set(dirs.flatMap(procsIn));
  return { dirs, pids: [...pids] };
}

const sandboxDirs = (instance, id) => cgroupState(instance).dirs.filter((d) => d.split('/').includes(id));
const sandboxPids = (instance, id) => [...new Set(sandboxDirs(instance, id).flatMap((d) => walkDirs(d)).flatMap(procsIn))];
// Host links: the sandbox links of this instance ("cb" + its first 6 hex, see docs/operations.md) and every
// other link that is not a sandbox link of another cubed or a fake internet's uplink (network-policy
// tests of other instances may run meanwhile).
const links = (instance) => fs.readdirSync('/sys/class/net')
  .filter((n) => n.startsWith(`cb${instance.slice(0, 6)}`) || !/^cb([0-9a-f]{6}\d+|tr[0-9a-f]{6})$/.test(n)).sort();

function mountsReferring(strs) {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l && strs.some((s) => l.includes(s)));
}

async function listIds(sdk) {
  const pager = sdk.Sandbox.list(c.sdkOpts);
  const all = [];
  while (pager.hasNext && all.length < 1000) all.push(...await pager.nextItems());
  return all;
}

ctest(c, 'kill -9 and restart: truthful list, adopted sandboxes work, nothing leaks', { timeout: 180_000 }, async () => {
  const instance = fs.readFileSync(path.join(c.stateDir, 'instance-id'), 'utf8').trim();
  assert.ok(instance.length > 0, 'empty instance-id');
  const sdk51 = await loadSdk('e2b-2.51');
  const sdk45 = await loadSdk('e2b-2.45');
  const baseNetns = netnsInodes().size;
  const baseLinks = links(instance);

  const a = await sdk51.Sandbox.create({ ...c.sdkOpts, metadata: { who: 'a' } });
  const b = await sdk45.Sandbox.create({ ...c.sdkOpts, metadata: { who: 'b' } });
  const dead = await sdk51.Sandbox.create({ ...c.sdkOpts, metadata: { who: 'dead' } });
  const expiring = await sdk51.Sandbox.create({ ...c.sdkOpts, metadata: { who: 'expiring' } });
  const ids = [a, b, dead, expiring].map((s) => s.sandboxId);
  await a.files.write('/tmp/state', 'a-state');
  await b.files.write('/tmp/state', 'b-state');
  const bg = await a.commands.run('sleep 600', { background: true, timeoutMs: 0 });
  const infoA = await a.getInfo();
  for (const id of ids) assert.ok(sandboxPids(instance, id).length > 0, `no processes found in the cgroups of ${id}`);
  assert.ok(netnsInodes().size >= baseNetns + 4, 'expected one network namespace per sandbox');
  const ourNetns = new Set(ids.flatMap((id) => sandboxPids(instance, id)).map((pid) => {
    try { return fs.readlinkSync(`/proc/${pid}/ns/net`); } catch { return null; }
  }).filter(Boolean));
  assert.equal(ourNetns.size, 4, `expected 4 distinct sandbox network namespaces, got ${[...ourNetns]}`);
  await expiring.setTimeout(2_000);

  // Crash.
  await c.kill9();
  // While cubed is down: one sandbox dies (its whole cgroup is killed), one reaches its timeout.
  for (const pid of sandboxPids(instance, dead.sandboxId)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  await sleep(3_000);
  for (const s of [a, b]) assert.ok(sandboxPids(instance, s.sandboxId).length > 0, `${s.sandboxId} died with cubed`);
  await c.restart();

  // Truthful list from both SDK versions.
  for (const sdk of [sdk51, sdk45]) {
    const listed = await listIds(sdk);
    const listedIds = listed.map((s) => s.sandboxId);
    assert.ok(listedIds.includes(a.sandboxId) && listedIds.includes(b.sandboxId), `adopted sandboxes missing: ${listedIds}`);
    assert.ok(!listedIds.includes(dead.sandboxId), 'a sandbox that died during the outage is listed');
    assert.ok(!listedIds.includes(expiring.sandboxId), 'a sandbox that expired during the outage is listed');
    assert.deepEqual(listed.find((s) => s.sandboxId === a.sandboxId).metadata, { who: 'a' });
  }
  await assert.rejects(sdk51.Sandbox.getInfo(dead.sandboxId, c.sdkOpts), sdk51.SandboxNotFoundError);
  assert.equal(await sdk51.Sandbox.kill(expiring.sandboxId, c.sdkOpts), false);

  // Adopted sandboxes keep working with the tokens the clients already hold.
  assert.equal((await a.commands.run('cat /tmp/state')).stdout, 'a-state');
  assert.equal((await b.commands.run('cat /tmp/state')).stdout, 'b-state');
  assert.ok((await a.commands.list()).some((p) => p.pid === bg.pid), 'background process lost across the restart');
  const infoA2 = await a.getInfo();
  assert.equal(infoA2.endAt.getTime(), infoA.endAt.getTime(), 'expiry changed across the restart');
  assert.equal(infoA2.startedAt.getTime(), infoA.startedAt.getTime());
  const again = await sdk45.Sandbox.connect(b.sandboxId, c.sdkOpts);
  assert.equal((await again.commands.run('echo reconnected')).stdout, 'reconnected\n');
  const fresh = await sdk51.Sandbox.create(c.sdkOpts);
  assert.equal((await fresh.commands.run('echo new')).stdout, 'new\n');
  ids.push(fresh.sandboxId);

  // The reclaimed sandboxes left nothing behind already.
  for (const id of [dead.sandboxId, expiring.sandboxId]) {
    const ok = await waitFor(() => sandboxPids(instance, id).length === 0 && sandboxDirs(instance, id).length === 0, 10_000);
    assert.ok(ok, `reclaimed ${id} left cgroups ${sandboxDirs(instance, id)} / pids ${sandboxPids(instance, id)}`);
  }

  // Kill everything and count leaks.
  assert.equal(await a.kill(), true);
  assert.equal(await b.kill(), true);
  assert.equal(await fresh.kill(), true);
  assert.deepEqual(await listIds(sdk51), []);
  const clean = await waitFor(() => cgroupState(instance).pids.length === 0, 10_000);
  assert.ok(clean, `processes left in instance cgroups: ${cgroupState(instance).pids}`);
  // The cgroup dirs go right after the last process, in the background destroy: wait for them too.
  await waitFor(() => ids.every((id) => sandboxDirs(instance, id).length === 0), 10_000);
  for (const id of ids) assert.deepEqual(sandboxDirs(instance, id), [], `cgroup dirs left for ${id}`);
  // The layer is unmounted last, after the cgroups.
  await waitFor(() => mountsReferring([c.stateDir, ...ids]).length === 0, 10_000);
  assert.deepEqual(mountsReferring([c.stateDir, ...ids]), [], 'mounts left on the host');
  const held = netnsInodes();
  assert.deepEqual([...ourNetns].filter((n) => held.has(n)), [], 'sandbox network namespaces still held');
  const nsBack = await waitFor(() => netnsInodes().size <= baseNetns, 10_000);
  assert.ok(nsBack, `network namespaces: baseline ${baseNetns}, now ${netnsInodes().size}`);
  assert.deepEqual(links(instance), baseLinks, 'network links left on the host');
  assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
});

ctest(c, 'SIGTERM leaves sandboxes running and the next start adopts them', { timeout: 90_000 }, async () => {
  const sdk = await loadSdk('e2b-2.51');
  const s = await sdk.Sandbox.create(c.sdkOpts);
  await s.files.write('/tmp/x', 'kept');
  await c.restart(); // SIGTERM then start again
  assert.equal(await s.files.read('/tmp/x'), 'kept');
  assert.ok((await listIds(sdk)).some((x) => x.sandboxId === s.sandboxId));
  assert.equal(await s.kill(), true);
});
