// Prometheus /metrics on the API port: text exposition format 0.0.4, no API key, and the families the
// operations guide documents move when sandboxes are created, used through the proxy, and killed.

import assert from 'node:assert/strict';
import { useCubed, ctest, api, forEachSdk, waitFor } from './harness.mjs';

const c = useCubed();

// Parse the exposition: every sample belongs to a family declared by # TYPE; returns {types, samples}.
function parseExposition(text) {
  const types = new Map();
  const samples = [];
  const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) { assert.ok(!types.has(t[1]), `family ${t[1]} declared twice`); types.set(t[1], t[2]); continue; }
    assert.ok(!line.startsWith('#'), `unexpected comment: ${line}`);
    const m = sampleRe.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const family = m[1].replace(/_(bucket|sum|count)$/, (s) => (types.get(m[1].slice(0, -s.length)) === 'histogram' ? '' : s));
    assert.ok(types.has(family), `sample ${m[1]} has no # TYPE`);
    samples.push({ name: m[1], family, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

const value = (p, name, labels = {}) => p.samples.filter((s) => s.name === name &&
  Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

async function scrape() {
  const r = await fetch(`${c.apiUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await r.text());
}

function checkHistograms(p) {
  for (const [family, type] of p.types) {
    if (type !== 'histogram') continue;
    const series = new Map();
    for (const s of p.samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      if (!series.has(key)) series.set(key, []);
      series.get(key).push([le === '+Inf' ? Infinity : Number(le), s.value]);
    }
    for (const [key, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(buckets[i][0] > buckets[i - 1][0], `${family}${key}: bucket bounds ascend`);
        assert.ok(buckets[i][1] >= buckets[i - 1][1], `${family}${key}: cumulative buckets`);
      }
      assert.equal(buckets.at(-1)[0], Infinity, `${family}${key}: +Inf bucket`);
      const count = value(p, `${family}_count`, JSON.parse(key));
      assert.equal(buckets.at(-1)[1], count, `${family}${key}: +Inf bucket equals _count`);
    }
  }
}

ctest(c, 'GET /metrics needs no key and parses as the text exposition format', async () => {
  const p = await scrape();
  assert.equal(p.types.get('cube_sandboxes'), 'gauge');
  for (const state of ['starting', 'running']) {
    assert.ok(p.samples.some((s) => s.name === 'cube_sandboxes' && s.labels.state === state), `state ${state}`);
  }
  assert.ok(value(p, 'cube_admission_slots_limit') > 0);
  assert.ok(value(p, 'cube_host_memory_available_bytes') > 0);
  checkHistograms(p);
});

forEachSdk(c, 'create, proxy, kill and errors move their metrics', async ({ create }) => {
  const before = await scrape();
  const sbx = await create({ timeoutMs: 60_000 });
  const out = await sbx.commands.run('echo hi');
  assert.equal(out.stdout, 'hi\n');
  const mid = await scrape();
  assert.equal(value(mid, 'cube_sandboxes', { state: 'running' }), value(before, 'cube_sandboxes', { state: 'running' }) + 1);
  assert.ok(value(mid, 'cube_sandbox_create_seconds_count') >= value(before, 'cube_sandbox_create_seconds_count') + 1);
  assert.ok(value(mid, 'cube_proxy_request_seconds_count') > value(before, 'cube_proxy_request_seconds_count'));
  const id = sbx.sandboxId;
  await sbx.kill();
  assert.equal((await api(c, 'GET', `/sandboxes/${id}`)).status, 404);
  const after = await waitFor(async () => {
    const p = await scrape();
    return value(p, 'cube_sandbox_kill_seconds_count') >= value(before, 'cube_sandbox_kill_seconds_count') + 1 ? p : null;
  }, 10_000);
  assert.ok(after, 'kill latency observed');
  assert.equal(value(after, 'cube_sandboxes', { state: 'running' }), value(before, 'cube_sandboxes', { state: 'running' }));
  assert.ok(value(after, 'cube_api_errors_total', { endpoint: 'GET /sandboxes/{id}', code: '404' }) >=
    value(before, 'cube_api_errors_total', { endpoint: 'GET /sandboxes/{id}', code: '404' }) + 1);
  checkHistograms(after);
});
