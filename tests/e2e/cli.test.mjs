// cubemastercli against a live cubed over its admin socket: list, info, cubebox destroy/rm, apikey
// create/list/delete, human and --json output, and a clear error when cubed cannot be reached.

import assert from 'node:assert/strict';
import { useCubed, ctest, run, bin, api, loadSdk } from './harness.mjs';

const c = useCubed();
const cli = (...args) => run(bin.cli, ['--socket', c.socket, ...args], { timeoutMs: 15_000 });
const cliJson = async (...args) => {
  const r = await cli('--json', ...args);
  assert.equal(r.code, 0, `cubemastercli --json ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  try { return JSON.parse(r.stdout); } catch { assert.fail(`--json ${args.join(' ')} printed non-JSON: ${r.stdout}`); }
};

async function newSandbox(metadata) {
  const { Sandbox } = await loadSdk('e2b-2.51');
  return Sandbox.create({ ...c.sdkOpts, metadata });
}

ctest(c, 'list and info, human and --json', async () => {
  const sbx = await newSandbox({ purpose: 'cli-test' });
  try {
    const human = await cli('list');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(sbx.sandboxId));
    assert.match(human.stdout.split('\n')[0], /id/i, `no header line: ${human.stdout}`);
    assert.doesNotMatch(human.stdout.trim(), /^[[{]/, 'human output looks like JSON');

    const list = await cliJson('list');
    assert.ok(Array.isArray(list), `list --json is not an array: ${JSON.stringify(list)}`);
    const entry = list.find((e) => JSON.stringify(e).includes(sbx.sandboxId));
    assert.ok(entry, 'sandbox missing from list --json');
    assert.ok(JSON.stringify(entry).includes('cli-test'), `metadata missing: ${JSON.stringify(entry)}`);

    const info = await cli('info', sbx.sandboxId);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, new RegExp(sbx.sandboxId));
    assert.match(info.stdout, /base/);
    const infoJson = await cliJson('info', sbx.sandboxId);
    assert.equal(typeof infoJson, 'object');
    assert.ok(JSON.stringify(infoJson).includes(sbx.sandboxId));
    assert.ok(/running/.test(JSON.stringify(infoJson)), `state missing: ${JSON.stringify(infoJson)}`);

    const missing = await cli('info', 'inosuchsandbox000000x');
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr + missing.stdout, /not found|doesn't exist|no such/i);
  } finally {
    await sbx.kill().catch(() => {});
  }
});

ctest(c, 'cubebox destroy and cubebox rm kill sandboxes', async () => {
  const a = await newSandbox();
  const b = await newSandbox();
  const d = await cli('cubebox', 'destroy', a.sandboxId);
  assert.equal(d.code, 0, d.stderr);
  const r = await cli('cubebox', 'rm', b.sandboxId);
  assert.equal(r.code, 0, r.stderr);
  for (const s of [a, b]) {
    assert.equal((await api(c, 'GET', `/sandboxes/${s.sandboxId}`)).status, 404, `${s.sandboxId} still exists`);
    assert.equal(await s.isRunning(), false);
  }
  const again = await cli('cubebox', 'rm', a.sandboxId);
  assert.notEqual(again.code, 0, 'removing a removed sandbox should fail');
  assert.ok(!(await cliJson('list')).some((e) => JSON.stringify(e).includes(a.sandboxId)));
});

ctest(c, 'apikey create, list and delete', async () => {
  const created = await cli('apikey', 'create', '--name', 'human-made');
  assert.equal(created.code, 0, created.stderr);
  const key = created.stdout.match(/e2b_[0-9a-f]{8,}/)?.[0];
  assert.ok(key, `no key in human output: ${created.stdout}`);
  assert.equal((await api(c, 'GET', '/v2/sandboxes', { key })).status, 200, 'new key does not work');

  const j = await cliJson('apikey', 'create', '--name', 'json-made');
  assert.match(j.key, /^e2b_[0-9a-f]+$/);
  assert.equal(j.name, 'json-made');
  assert.ok(j.id !== undefined && j.id !== null && String(j.id).length > 0);

  const listHuman = await cli('apikey', 'list');
  assert.equal(listHuman.code, 0, listHuman.stderr);
  assert.match(listHuman.stdout, /human-made/);
  assert.match(listHuman.stdout, /json-made/);
  assert.ok(!listHuman.stdout.includes(key) && !listHuman.stdout.includes(j.key), 'apikey list shows full keys');
  const list = await cliJson('apikey', 'list');
  assert.ok(Array.isArray(list));
  const names = list.map((k) => k.name);
  for (const n of ['test', 'human-made', 'json-made']) assert.ok(names.includes(n), `missing ${n}: ${names}`);
  assert.ok(!JSON.stringify(list).includes(j.key), 'apikey list --json shows a full key');

  const del = await cli('apikey', 'delete', String(j.id));
  assert.equal(del.code, 0, del.stderr);
  assert.equal((await api(c, 'GET', '/v2/sandboxes', { key: j.key })).status, 401, 'deleted key still accepted');
  assert.ok(!(await cliJson('apikey', 'list')).some((k) => String(k.id) === String(j.id)));
  const delAgain = await cli('apikey', 'delete', String(j.id));
  assert.notEqual(delAgain.code, 0, 'deleting a deleted key should fail');
  // The harness key still works.
  assert.equal((await api(c, 'GET', '/v2/sandboxes')).status, 200);
});

ctest(c, 'usage errors and an unreachable cubed give clear non-zero exits', async () => {
  const sock = '/tmp/cube-e2e-no-such-dir/cubed.sock';
  for (const args of [['list'], ['--json', 'list'], ['apikey', 'list'], ['info', 'x']]) {
    const r = await run(bin.cli, ['--socket', sock, ...args], { timeoutMs: 15_000 });
    assert.notEqual(r.code, 0, `${args.join(' ')} exited 0`);
    assert.equal(r.signal, null, `${args.join(' ')} was killed (hung?)`);
    assert.match(r.stderr, /cubed/i, `${args.join(' ')}: stderr should mention cubed: ${r.stderr}`);
    assert.match(r.stderr, /reach|connect|running|not available/i, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(sock), `stderr should name the socket: ${r.stderr}`);
  }
  const bad = await cli('frobnicate');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr + bad.stdout, /usage|unknown/i);
  const noId = await cli('cubebox', 'destroy');
  assert.notEqual(noId.code, 0);
});
