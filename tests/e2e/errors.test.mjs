// Bad input against the raw API and data plane: every failure gets its documented status and a JSON body,
// nothing hangs, and the service keeps serving afterwards.

import assert from 'node:assert/strict';
import { useCubed, ctest, api, dataRequest, loadSdk } from './harness.mjs';

const c = useCubed();

function assertErrorBody(r, status, what) {
  assert.equal(r.status, status, `${what}: status ${r.status}, body ${r.text}`);
  assert.match(r.headers.get ? r.headers.get('content-type') ?? '' : String(r.headers['content-type']), /application\/json/, `${what}: content-type`);
  assert.ok(r.json && typeof r.json === 'object', `${what}: body is not JSON: ${r.text}`);
  assert.equal(r.json.code, status, `${what}: body code ${JSON.stringify(r.json)}`);
  assert.equal(typeof r.json.message, 'string', `${what}: body message`);
  assert.ok(r.json.message.length > 0);
}

ctest(c, 'malformed JSON and wrong types on create are 400 with a JSON error', async () => {
  for (const p of ['/sandboxes', '/v2/sandboxes']) {
    assertErrorBody(await api(c, 'POST', p, { rawBody: '{"templateID":', headers: { 'Content-Type': 'application/json' } }), 400, `${p} truncated JSON`);
    assertErrorBody(await api(c, 'POST', p, { rawBody: 'not json at all', headers: { 'Content-Type': 'application/json' } }), 400, `${p} garbage`);
    assertErrorBody(await api(c, 'POST', p, { rawBody: '[1,2,3]', headers: { 'Content-Type': 'application/json' } }), 400, `${p} array body`);
    assertErrorBody(await api(c, 'POST', p, { body: { templateID: 123 } }), 400, `${p} templateID number`);
    assertErrorBody(await api(c, 'POST', p, { body: { templateID: 'base', timeout: 'soon' } }), 400, `${p} timeout string`);
    assertErrorBody(await api(c, 'POST', p, { body: { templateID: 'base', timeout: -5.5 } }), 400, `${p} timeout negative float`);
    assertErrorBody(await api(c, 'POST', p, { body: { templateID: 'base', metadata: { a: 1 } } }), 400, `${p} metadata value number`);
    assertErrorBody(await api(c, 'POST', p, { body: { templateID: 'base', envVars: ['A=1'] } }), 400, `${p} envVars array`);
  }
  assertErrorBody(await api(c, 'POST', '/sandboxes', { body: {} }), 400, 'v1 missing templateID');
  // Timeout body for an existing route with wrong type (sandbox id unknown is fine: types are checked either way).
  const t = await api(c, 'POST', '/sandboxes/inosuchsandbox000000x/timeout', { rawBody: '{bad', headers: { 'Content-Type': 'application/json' } });
  assert.ok(t.status === 400 || t.status === 404, `timeout with bad JSON: ${t.status}`);
  assertErrorBody(t, t.status, 'timeout bad JSON');
});

ctest(c, 'unknown template is 404 (or 400) with a JSON error', async () => {
  for (const p of ['/sandboxes', '/v2/sandboxes']) {
    const r = await api(c, 'POST', p, { body: { templateID: 'no-such-template-zz' } });
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status} ${r.text}`);
    assertErrorBody(r, r.status, `${p} unknown template`);
    assert.match(r.json.message, /no-such-template-zz/);
  }
  // Path traversal in a template reference must not escape the templates dir.
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: '../../../../' } });
  assert.ok(r.status === 404 || r.status === 400, `traversal template: ${r.status} ${r.text}`);
});

ctest(c, 'unknown sandbox is 404 JSON on every API route', async () => {
  const id = 'inosuchsandbox000000x';
  assertErrorBody(await api(c, 'GET', `/sandboxes/${id}`), 404, 'get');
  assertErrorBody(await api(c, 'DELETE', `/sandboxes/${id}`), 404, 'delete');
  assertErrorBody(await api(c, 'POST', `/sandboxes/${id}/timeout`, { body: { timeout: 10 } }), 404, 'timeout');
  assertErrorBody(await api(c, 'POST', `/sandboxes/${id}/refreshes`, { body: { duration: 10 } }), 404, 'refreshes');
  assertErrorBody(await api(c, 'GET', `/sandboxes/${id}/metrics`), 404, 'metrics');
  assertErrorBody(await api(c, 'POST', `/sandboxes/${id}/connect`, { body: { timeout: 10 } }), 404, 'connect v1');
  assertErrorBody(await api(c, 'POST', `/v2/sandboxes/${id}/connect`, { body: {} }), 404, 'connect v2');
  const bad = await api(c, 'GET', '/sandboxes/BAD.ID-x');
  assert.ok(bad.status === 400 || bad.status === 404, `invalid id: ${bad.status}`);
  assertErrorBody(bad, bad.status, 'invalid id');
});

ctest(c, 'missing or wrong API key is 401 JSON; /health needs none', async () => {
  for (const [key, what] of [[null, 'missing'], ['e2b_00000000000000000000000000000000deadbeef', 'wrong'], ['', 'empty'], ['garbage', 'malformed']]) {
    assertErrorBody(await api(c, 'GET', '/v2/sandboxes', { key }), 401, `list with ${what} key`);
    assertErrorBody(await api(c, 'POST', '/v2/sandboxes', { key, body: { templateID: 'base' } }), 401, `create with ${what} key`);
    assertErrorBody(await api(c, 'DELETE', '/sandboxes/inosuchsandbox000000x', { key }), 401, `delete with ${what} key`);
  }
  assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
  // The SDK surfaces it as AuthenticationError.
  const sdk = await loadSdk('e2b-2.51');
  await assert.rejects(sdk.Sandbox.create({ ...c.sdkOpts, apiKey: 'e2b_0123456789abcdef' }), sdk.AuthenticationError);
});

// Connect envelope: 1 flag byte, 4-byte big-endian length, payload.
function envelope(flags, payload, lengthOverride) {
  const p = Buffer.from(payload);
  const h = Buffer.alloc(5);
  h[0] = flags;
  h.writeUInt32BE(lengthOverride ?? p.length, 1);
  return Buffer.concat([h, p]);
}

function parseFrames(buf) {
  const frames = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    const len = buf.readUInt32BE(off + 1);
    frames.push({ flags: buf[off], payload: buf.subarray(off + 5, off + 5 + len).toString('utf8') });
    off += 5 + len;
  }
  return { frames, rest: buf.length - off };
}

// A stream error is either a non-200 with a JSON body, or 200 + an EOS frame carrying error.code.
function assertStreamError(r, what) {
  if (r.status !== 200) {
    assert.ok(r.status >= 400 && r.status < 600, `${what}: status ${r.status}`);
    return;
  }
  const { frames } = parseFrames(r.body);
  const eos = frames.find((f) => f.flags & 0x02);
  assert.ok(eos, `${what}: 200 without an EOS frame: ${JSON.stringify(frames)}`);
  const j = JSON.parse(eos.payload);
  assert.equal(typeof j.error?.code, 'string', `${what}: EOS without error: ${eos.payload}`);
  assert.ok(!frames.some((f) => f.flags === 0 && f.payload.includes('"start"')), `${what}: a process was started`);
}

ctest(c, 'access token on envd; broken Connect envelopes get errors, not hangs', { timeout: 90_000 }, async () => {
  const created = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 120 } });
  assert.equal(created.status, 201, created.text);
  const { sandboxID: id, envdAccessToken: token } = created.json;
  assert.equal(typeof token, 'string');
  assert.ok(token.length >= 16, 'access token too short');
  try {
    const rpc = (p, body, headers = {}) => dataRequest(c, { sandboxId: id, port: 49983, route: 'headers', method: 'POST', path: p,
      body, headers: { 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1', ...headers }, timeoutMs: 10_000 });

    // Token enforcement (unary RPC and /files); /health is open.
    for (const [hdr, what] of [[{}, 'missing'], [{ 'X-Access-Token': token + 'x' }, 'wrong']]) {
      const r = await rpc('/process.Process/List', '{}', hdr);
      assert.equal(r.status, 401, `List with ${what} token: ${r.status} ${r.text}`);
      assert.equal(r.json?.code, 401);
      assert.equal(typeof r.json?.message, 'string');
      const f = await dataRequest(c, { sandboxId: id, path: '/files?path=%2Fetc%2Fhostname', headers: hdr });
      assert.equal(f.status, 401, `/files with ${what} token`);
      const s = await rpc('/process.Process/Start', envelope(0, JSON.stringify({ process: { cmd: '/bin/true' } })),
        { ...hdr, 'Content-Type': 'application/connect+json' });
      assert.ok(s.status === 401 || (s.status === 200 && /unauthenticated/.test(s.text)), `Start with ${what} token: ${s.status} ${s.text}`);
    }
    assert.equal((await dataRequest(c, { sandboxId: id, path: '/health' })).status, 204);
    const ok = await rpc('/process.Process/List', '{}', { 'X-Access-Token': token });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(Array.isArray(ok.json?.processes) || (ok.json && !('processes' in ok.json)), ok.text);

    const auth = { 'X-Access-Token': token, 'Content-Type': 'application/connect+json', 'Connect-Timeout-Ms': '5000' };
    const start = (body, extra = {}) => rpc('/process.Process/Start', body, { ...auth, ...extra });
    const valid = JSON.stringify({ process: { cmd: '/bin/echo', args: ['x'] } });
    const cases = [
      ['truncated header', Buffer.from([0, 0, 0])],
      ['length prefix larger than body', envelope(0, valid, 1000)],
      ['garbage JSON', envelope(0, '{not json')],
      ['JSON of the wrong shape', envelope(0, '{"process":"nope"}')],
      ['compressed flag', envelope(1, valid)],
      ['empty body', Buffer.alloc(0)],
      ['two envelopes', Buffer.concat([envelope(0, valid), envelope(0, valid)])],
    ];
    for (const [what, body] of cases) {
      const r = await start(body).catch((e) => e);
      assert.ok(!(r instanceof Error), `${what}: ${r.message}`);
      assertStreamError(r, what);
    }
    // Unary with garbage: Connect error JSON with a string code.
    const u = await rpc('/filesystem.Filesystem/Stat', 'garbage', { 'X-Access-Token': token });
    assert.equal(u.status, 400, `unary garbage: ${u.status} ${u.text}`);
    assert.equal(typeof u.json?.code, 'string');
    const unk = await rpc('/process.Process/NoSuchMethod', '{}', { 'X-Access-Token': token });
    assert.ok(unk.status === 404 || unk.status === 501, `unknown method: ${unk.status}`);
    // Non-numeric Connect-Timeout-Ms is invalid_argument.
    const badTimeout = await start(envelope(0, valid), { 'Connect-Timeout-Ms': 'soon' });
    assertStreamError(badTimeout, 'non-numeric Connect-Timeout-Ms');

    // Still serving: the valid call works on the same sandbox.
    const good = await start(envelope(0, valid));
    assert.equal(good.status, 200, good.text);
    const { frames } = parseFrames(good.body);
    assert.match(frames[0]?.payload ?? '', /"start"/);
    assert.ok(frames.some((f) => f.payload.includes('"end"')));
    assert.equal(frames[frames.length - 1].flags, 2);
  } finally {
    await api(c, 'DELETE', `/sandboxes/${id}`);
  }
});

ctest(c, 'the service keeps serving after all of the above', async () => {
  assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
  const { Sandbox } = await loadSdk('e2b-2.45');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    assert.equal((await sbx.commands.run('echo fine')).stdout, 'fine\n');
  } finally {
    await sbx.kill();
  }
});
