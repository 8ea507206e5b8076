// Sandbox lifecycle through the unmodified SDK: create (default, template, metadata, envs, timeout), list
// with metadata filter and pagination, getInfo, setTimeout expiry, kill, connect, metrics.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { useCubed, forEachSdk, ctest, loadSdk, api, dataRequest, waitFor, sleep } from './harness.mjs';

const c = useCubed();

const SEMVER = /^\d+\.\d+\.\d+/;
const near = (a, b, tolMs) => Math.abs(a - b) <= tolMs;

async function listAll(Sandbox, opts, maxPages = 10) {
  const pager = Sandbox.list(opts);
  const pages = [];
  while (pager.hasNext && pages.length < maxPages) pages.push(await pager.nextItems());
  return { pages, hasNext: pager.hasNext };
}

forEachSdk(c, 'create with defaults uses template base and is usable at once', async ({ create }) => {
  const t0 = Date.now();
  const sbx = await create();
  assert.match(sbx.sandboxId, /^[a-z0-9]+$/, 'sandbox id must be lowercase alphanumerics');
  const r = await sbx.commands.run('echo ready; cat /etc/debian_version');
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /^ready\n\d+/);
  const info = await sbx.getInfo();
  assert.equal(info.sandboxId, sbx.sandboxId);
  assert.ok(info.templateId === 'base' || info.name === 'base', `template: ${info.templateId}/${info.name}`);
  assert.equal(info.state, 'running');
  assert.match(info.envdVersion, SEMVER);
  const [maj, min] = info.envdVersion.split('.').map(Number);
  assert.ok(maj > 0 || min >= 4, `envdVersion ${info.envdVersion} must be >= 0.4.0`);
  assert.ok(info.startedAt instanceof Date && near(info.startedAt.getTime(), t0, 15_000),
    `startedAt ${info.startedAt?.toISOString?.()} vs now ${new Date(t0).toISOString()}`);
  // Default timeout 300 s (v2 default; 2.45 sends 300 explicitly).
  const ttl = info.endAt.getTime() - info.startedAt.getTime();
  assert.ok(near(ttl, 300_000, 10_000), `default ttl ${ttl} ms`);
  assert.ok(info.cpuCount >= 1, `cpuCount ${info.cpuCount}`);
  assert.ok(info.memoryMB >= 128, `memoryMB ${info.memoryMB}`);
  assert.equal(await sbx.isRunning(), true);
});

forEachSdk(c, 'create with template, metadata, envs and timeout', async ({ create }) => {
  const metadata = { owner: 'e2e', run: randomBytes(4).toString('hex') };
  const sbx = await create('base', { metadata, envs: { FOO: 'bar', SPACED: 'a b c' }, timeoutMs: 120_000 });
  const info = await sbx.getInfo();
  assert.deepEqual(info.metadata, metadata);
  const ttl = info.endAt.getTime() - Date.now();
  assert.ok(ttl > 100_000 && ttl <= 121_000, `endAt should be ~120 s ahead, is ${ttl} ms`);
  const r = await sbx.commands.run('printf "%s|%s|%s" "$FOO" "$SPACED" "$E2B_SANDBOX"');
  assert.equal(r.stdout, 'bar|a b c|true');
});

forEachSdk(c, 'create with an unknown template fails cleanly', async ({ create, sdk }) => {
  await assert.rejects(create('no-such-template-xyz'), (e) => {
    assert.ok(e instanceof sdk.SandboxError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.match(e.message, /40[04]/);
    return true;
  });
});

forEachSdk(c, 'list filters by metadata and paginates with limit 1', async ({ create, Sandbox }) => {
  const suite = randomBytes(6).toString('hex');
  const a = await create({ metadata: { suite, n: '1' } });
  const b = await create({ metadata: { suite, n: '2', 'k y': 'a b&c=d' } });
  const other = await create({ metadata: { suite: 'other-' + suite } });

  const { pages } = await listAll(Sandbox, { ...c.sdkOpts, query: { metadata: { suite } } });
  const ids = pages.flat().map((s) => s.sandboxId).sort();
  assert.deepEqual(ids, [a.sandboxId, b.sandboxId].sort());
  assert.ok(!ids.includes(other.sandboxId));
  const listedB = pages.flat().find((s) => s.sandboxId === b.sandboxId);
  assert.deepEqual(listedB.metadata, { suite, n: '2', 'k y': 'a b&c=d' });
  assert.equal(listedB.state, 'running');
  assert.ok(listedB.startedAt instanceof Date && !Number.isNaN(listedB.startedAt.getTime()));

  // AND of two keys, and a key/value needing escaping.
  const one = await listAll(Sandbox, { ...c.sdkOpts, query: { metadata: { suite, n: '2' } } });
  assert.deepEqual(one.pages.flat().map((s) => s.sandboxId), [b.sandboxId]);
  const esc = await listAll(Sandbox, { ...c.sdkOpts, query: { metadata: { 'k y': 'a b&c=d' } } });
  assert.deepEqual(esc.pages.flat().map((s) => s.sandboxId), [b.sandboxId]);
  const none = await listAll(Sandbox, { ...c.sdkOpts, query: { metadata: { suite: 'nope-' + suite } } });
  assert.deepEqual(none.pages.flat(), []);

  // Pagination: limit 1 yields single-item pages that together give exactly both sandboxes.
  const paged = await listAll(Sandbox, { ...c.sdkOpts, limit: 1, query: { metadata: { suite } } });
  assert.ok(paged.pages.length >= 2, `expected >= 2 pages, got ${paged.pages.length}`);
  for (const p of paged.pages) assert.ok(p.length <= 1, `page of ${p.length} items with limit 1`);
  assert.equal(paged.pages[0].length, 1);
  assert.equal(paged.hasNext, false, 'paginator must terminate');
  const pagedIds = paged.pages.flat().map((s) => s.sandboxId);
  assert.equal(new Set(pagedIds).size, pagedIds.length, `duplicates across pages: ${pagedIds}`);
  assert.deepEqual(pagedIds.sort(), [a.sandboxId, b.sandboxId].sort());
});

forEachSdk(c, 'setTimeout to 3 s really kills the sandbox', { timeout: 60_000 }, async ({ create, Sandbox, sdk }) => {
  const suite = randomBytes(6).toString('hex');
  const sbx = await create({ metadata: { suite } });
  await sbx.setTimeout(3_000);
  const info = await sbx.getInfo();
  const left = info.endAt.getTime() - Date.now();
  assert.ok(left <= 4_000 && left > -1_000, `endAt should be ~3 s ahead, is ${left} ms`);
  const gone = await waitFor(async () => {
    const { pages } = await listAll(Sandbox, { ...c.sdkOpts, query: { metadata: { suite } } });
    return pages.flat().length === 0;
  }, 15_000, 250);
  assert.ok(gone, 'sandbox still listed 15 s after a 3 s timeout');
  await assert.rejects(sbx.getInfo(), sdk.SandboxNotFoundError);
  const dp = await dataRequest(c, { sandboxId: sbx.sandboxId, path: '/health' });
  assert.equal(dp.status, 502, `data plane after expiry: ${dp.status} ${dp.text}`);
  assert.equal(await sbx.isRunning(), false);
  assert.equal(await sbx.kill(), false);
});

forEachSdk(c, 'kill returns true then false and the data plane answers 502', async ({ create, Sandbox, sdk }) => {
  const sbx = await create();
  assert.equal(await sbx.kill(), true);
  assert.equal(await sbx.kill(), false);
  assert.equal(await Sandbox.kill(sbx.sandboxId, c.sdkOpts), false);
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId, c.sdkOpts), sdk.SandboxNotFoundError);
  const dp = await dataRequest(c, { sandboxId: sbx.sandboxId, path: '/health', route: 'headers' });
  assert.equal(dp.status, 502);
  assert.equal(dp.json?.code, 502);
  assert.match(dp.json?.message ?? '', /sandbox was not found/i);
  const { pages } = await listAll(Sandbox, { ...c.sdkOpts });
  assert.ok(!pages.flat().some((s) => s.sandboxId === sbx.sandboxId), 'killed sandbox still listed');
});

forEachSdk(c, 'Sandbox.connect to a running sandbox runs commands and keeps its state', async ({ create, Sandbox, sdk }) => {
  const sbx = await create({ envs: { CONNECTED: 'yes' } });
  await sbx.files.write('/tmp/marker', 'from-first-client');
  const again = await Sandbox.connect(sbx.sandboxId, c.sdkOpts);
  assert.equal(again.sandboxId, sbx.sandboxId);
  const r = await again.commands.run('cat /tmp/marker; echo " $CONNECTED"');
  assert.equal(r.stdout, 'from-first-client yes\n');
  // Connect must not shorten the lifetime, and an unknown id is SandboxNotFoundError.
  const info = await again.getInfo();
  assert.ok(info.endAt.getTime() - Date.now() > 200_000);
  await assert.rejects(Sandbox.connect('nosuchsandbox0000000', c.sdkOpts), sdk.SandboxNotFoundError);
});

forEachSdk(c, 'getMetrics returns real cgroup figures', { timeout: 60_000 }, async ({ create }) => {
  const sbx = await create();
  // Allocate ~64 MB and keep it, so memUsed must reflect it.
  await sbx.commands.run(`python3 -c "import time; b=b'x'*(64<<20); time.sleep(60)"`,
    { background: true });
  await sleep(1500);
  const metrics = await waitFor(async () => {
    const m = await sbx.getMetrics();
    return m.length && m[m.length - 1].memUsed > 60 * 1024 * 1024 ? m : null;
  }, 20_000, 500);
  assert.ok(metrics, `no metrics with memUsed > 60 MiB: ${JSON.stringify(await sbx.getMetrics())}`);
  const m = metrics[metrics.length - 1];
  assert.ok(m.timestamp instanceof Date && Math.abs(m.timestamp.getTime() - Date.now()) < 120_000, `timestamp ${m.timestamp}`);
  assert.ok(m.cpuCount >= 1, `cpuCount ${m.cpuCount}`);
  assert.ok(m.memTotal >= 128 * 1024 * 1024, `memTotal ${m.memTotal}`);
  assert.ok(m.memUsed < m.memTotal, `memUsed ${m.memUsed} memTotal ${m.memTotal}`);
  assert.ok(m.cpuUsedPct >= 0 && m.cpuUsedPct <= 100 * m.cpuCount, `cpuUsedPct ${m.cpuUsedPct}`);
  assert.ok(m.diskTotal >= 0 && m.diskUsed >= 0);
});

// Logs carry the sandbox's lifecycle and envd's process lifecycle lines, in both API versions.
ctest(c, 'logs show sandbox and process lifecycle lines (v1 and v2)', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    await sbx.commands.run('echo logged');
    const v2 = await waitFor(async () => {
      const r = await api(c, 'GET', `/v2/sandboxes/${sbx.sandboxId}/logs`);
      const msgs = (r.json?.logs ?? []).map((e) => e.message);
      return msgs.some((m) => /process \d+ ended/.test(m)) ? r : null;
    }, 5_000, 100);
    assert.ok(v2, 'no "process ... ended" line in the v2 logs');
    const msgs = v2.json.logs.map((e) => e.message);
    assert.ok(msgs.some((m) => /sandbox started from template base/.test(m)), JSON.stringify(msgs));
    assert.ok(msgs.some((m) => /process \d+ started as user/.test(m)), JSON.stringify(msgs));
    for (const e of v2.json.logs) {
      assert.ok(!Number.isNaN(Date.parse(e.timestamp)) && ['debug', 'info', 'warn', 'error'].includes(e.level), JSON.stringify(e));
      assert.equal(typeof e.fields, 'object');
    }
    const v1 = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}/logs`);
    assert.equal(v1.status, 200);
    assert.ok(v1.json.logs.some((l) => /process \d+ started/.test(l.line)), JSON.stringify(v1.json.logs));
  } finally {
    await sbx.kill();
  }
  // After the kill the sandbox's own lifecycle lines are still served (from the store).
  const after = await api(c, 'GET', `/v2/sandboxes/${sbx.sandboxId}/logs`);
  assert.equal(after.status, 200);
  assert.ok(after.json.logs.some((e) => /killed/.test(e.message)), JSON.stringify(after.json));
});
