// Sandbox networking and egress policy against a fake internet (fakenet.mjs): the default policy,
// allow_internet_access=false with domain rules on any port, allowOut > denyOut > default for TCP and
// UDP, runtime updates, the traffic access token, and that kill leaves no links behind.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { before, after } from 'node:test';
import { forEachSdk, ctest, api, dataRequest, waitFor, loadSdk, run, bin, Cubed } from './harness.mjs';
import { createHash, randomBytes } from 'node:crypto';
import { FakeInternet, ADDR, PORTS, FLOOD_NAMES, hostListener, probe } from './fakenet.mjs';

const inet = new FakeInternet();
let hostSrv;
// One hook each way, so cubed only starts once the fake internet is up and everything stops in reverse.
const c = new Cubed({ extraArgs: inet.cubedArgs() });
before(async () => { await inet.start(); hostSrv = await hostListener(); await c.start(); }, { timeout: 90_000 });
after(async () => {
  try { await c.stop(); } finally { hostSrv?.close(); await inet.stop(); }
}, { timeout: 90_000 });

const ok = (r, k) => assert.ok(r[k]?.ok, `${k} should be reachable, got ${JSON.stringify(r[k])}`);
const blocked = (r, k) => assert.ok(r[k] && !r[k].ok, `${k} should be blocked, got ${JSON.stringify(r[k])}`);
const served = (r, k, addr) => assert.equal(JSON.parse(r[k].body).server, addr, `${k} answered by the wrong server`);

async function netInfo(id) {
  const r = await api(c, 'GET', `/sandboxes/${id}/network`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

function instanceLinks() {
  const inst = fs.readFileSync(path.join(c.stateDir, 'instance-id'), 'utf8').trim();
  return fs.readdirSync('/sys/class/net').filter((n) => n.startsWith(`cb${inst.slice(0, 6)}`));
}

forEachSdk(c, 'default policy: internet and DNS yes; metadata, private ranges, the host and other sandboxes no',
  { timeout: 180_000 }, async ({ create }) => {
    const a = await create();
    const b = await create();
    await b.commands.run('python3 -m http.server 8080 --bind 0.0.0.0', { background: true, timeoutMs: 0 });
    const [na, nb] = [await netInfo(a.sandboxId), await netInfo(b.sandboxId)];
    assert.notEqual(na.address, nb.address);
    assert.match((await a.commands.run('cat /etc/resolv.conf')).stdout, new RegExp(`nameserver ${na.gateway.replace(/\./g, '\\.')}`));
    // b's own server is up (so a failure below is the policy, not a missing server).
    const self = await waitFor(async () => (await probe(b, { self: ['tcp', nb.address, 8080] })).self.ok, 10_000, 300);
    assert.ok(self, 'the http.server in b never came up');
    const port = hostSrv.address().port;
    const r = await probe(a, {
      web: ['tcp', ADDR.web, PORTS.http], odd: ['tcp', ADDR.api, PORTS.odd], udp: ['udp', ADDR.web, PORTS.udp],
      byName: ['tcp', 'api.example.test', PORTS.http],
      metadata: ['tcp', ADDR.metadata, PORTS.http], private: ['tcp', ADDR.private, PORTS.http],
      privateUdp: ['udp', ADDR.private, PORTS.udp], metadataUdp: ['udp', ADDR.metadata, PORTS.udp],
      hostGw: ['tcp', na.gateway, port], hostUplink: ['tcp', inet.uplinkHost, port], hostApi: ['tcp', na.gateway, c.apiPort],
      sandbox: ['tcp', nb.address, 8080],
    });
    // The host's own addresses on its other interfaces (delivered locally, so this never leaves the host).
    const own = Object.entries(os.networkInterfaces()).filter(([n]) => !n.startsWith('cb') && n !== 'lo')
      .flatMap(([, as]) => as).filter((a) => a.family === 'IPv4').map((a) => a.address);
    if (own.length) {
      const h = await probe(a, Object.fromEntries(own.map((addr, i) => [`host${i}`, ['tcp', addr, port]])));
      for (const k of Object.keys(h)) blocked(h, k);
    }
    ok(r, 'web'); served(r, 'web', ADDR.web);
    ok(r, 'odd'); ok(r, 'udp'); ok(r, 'byName'); served(r, 'byName', ADDR.api);
    for (const k of ['metadata', 'private', 'privateUdp', 'metadataUdp', 'hostGw', 'hostUplink', 'hostApi', 'sandbox']) blocked(r, k);
  });

forEachSdk(c, 'allow_internet_access=false with allowOut "*.example.test": only those names, on any port',
  { timeout: 180_000 }, async ({ create }) => {
    const sbx = await create({ allowInternetAccess: false, network: { allowOut: ['*.example.test'] } });
    const r = await probe(sbx, {
      api80: ['tcp', 'api.example.test', PORTS.http], apiOdd: ['tcp', 'api.example.test', PORTS.odd],
      apiUdp: ['udp', 'api.example.test', PORTS.udp],
      other: ['tcp', 'other.test', PORTS.http], apex: ['tcp', 'example.test', PORTS.http],
      byIp: ['tcp', ADDR.other, PORTS.http],
    });
    ok(r, 'api80'); served(r, 'api80', ADDR.api); ok(r, 'apiOdd'); ok(r, 'apiUdp');
    for (const k of ['other', 'apex', 'byIp']) blocked(r, k);
    const info = await sbx.getInfo();
    assert.equal(info.allowInternetAccess, false);
    const n = await netInfo(sbx.sandboxId);
    assert.deepEqual(n.allowOut, ['*.example.test']);
    assert.ok(n.learnedAddresses >= 1, `no learned address: ${JSON.stringify(n)}`);
  });

forEachSdk(c, 'allowOut beats denyOut, denyOut beats the default; an explicit allow opens the metadata address',
  { timeout: 180_000 }, async ({ create }) => {
    const sbx = await create({ network: {
      allowOut: [ADDR.api, `${ADDR.metadata}/32`], denyOut: ['203.0.113.0/24', ADDR.other],
    } });
    const r = await probe(sbx, {
      api: ['tcp', ADDR.api, PORTS.http], apiUdp: ['udp', ADDR.api, PORTS.udp],
      web: ['tcp', ADDR.web, PORTS.http], webUdp: ['udp', ADDR.web, PORTS.udp],
      other: ['tcp', ADDR.other, PORTS.odd], metadata: ['tcp', ADDR.metadata, PORTS.http],
      private: ['tcp', ADDR.private, PORTS.http],
    });
    ok(r, 'api'); ok(r, 'apiUdp'); ok(r, 'metadata'); served(r, 'metadata', ADDR.metadata);
    for (const k of ['web', 'webUdp', 'other', 'private']) blocked(r, k);
  });

forEachSdk(c, 'PUT /network flips access for a sandbox whose processes keep running', { timeout: 180_000 },
  async ({ create }) => {
    const sbx = await create();
    const bg = await sbx.commands.run('sleep 600', { background: true, timeoutMs: 0 });
    ok(await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http] }), 'web');
    await sbx.updateNetwork({ denyOut: [ADDR.web] });
    let r = await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http], api: ['tcp', ADDR.api, PORTS.http] });
    blocked(r, 'web'); ok(r, 'api');
    await sbx.updateNetwork({ allowInternetAccess: false, allowOut: [ADDR.web] });
    r = await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http], api: ['tcp', ADDR.api, PORTS.http] });
    ok(r, 'web'); blocked(r, 'api');
    await sbx.updateNetwork({});   // replace semantics: back to the default
    r = await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http], api: ['tcp', ADDR.api, PORTS.http] });
    ok(r, 'web'); ok(r, 'api');
    assert.ok((await sbx.commands.list()).some((p) => p.pid === bg.pid), 'the background process did not survive');
  });

ctest(c, 'cubemastercli sandbox network get|set', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    const cli = (...args) => run(bin.cli, ['--socket', c.socket, 'sandbox', 'network', ...args]);
    let r = await cli('set', sbx.sandboxId, '--deny-out', ADDR.web, '--allow-out', 'api.example.test');
    assert.equal(r.code, 0, r.stderr);
    blocked(await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http] }), 'web');
    r = await cli('get', sbx.sandboxId, '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual([j.allowOut, j.denyOut, j.allow_internet_access], [['api.example.test'], [ADDR.web], true]);
    r = await cli('get', sbx.sandboxId);
    assert.match(r.stdout, new RegExp(`deny out\\s+${ADDR.web.replace(/\./g, '\\.')}\n`));
    r = await cli('set', sbx.sandboxId, '--deny-out', 'example.com');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /400/);
    assert.equal((await cli('get', 'inope')).code, 1);
  } finally {
    await sbx.kill();
  }
});

ctest(c, 'network update errors: 400 for bad entries, 404 for unknown sandboxes', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    for (const body of [{ denyOut: ['example.com'] }, { allowOut: ['10.0.0.0/33'] }, { allowOut: 'x' },
      { allow_internet_access: 'yes' }]) {
      const r = await api(c, 'PUT', `/sandboxes/${sbx.sandboxId}/network`, { body });
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
      assert.equal(r.json.code, 400);
    }
    assert.equal((await api(c, 'PUT', '/sandboxes/inope/network', { body: {} })).status, 404);
    await assert.rejects(Sandbox.create({ ...c.sdkOpts, network: { denyOut: ['*.example.test'] } }), /denyOut/);
  } finally {
    await sbx.kill();
  }
});

forEachSdk(c, 'allowPublicTraffic=false: the proxy wants the traffic access token on non-envd ports',
  async ({ create }) => {
    const sbx = await create({ network: { allowPublicTraffic: false } });
    assert.match(sbx.trafficAccessToken ?? '', /^[0-9a-f]{40}$/);
    await sbx.commands.run('python3 -m http.server 8080', { background: true, timeoutMs: 0 });
    const token = sbx.trafficAccessToken;
    const up = await waitFor(async () => (await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080,
      headers: { 'e2b-traffic-access-token': token } })).status === 200, 15_000, 200);
    assert.ok(up, 'the server never answered with the token');
    const none = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080 });
    assert.equal(none.status, 403);
    assert.equal(none.json.code, 403);
    const wrong = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080, headers: { 'e2b-traffic-access-token': 'x' } });
    assert.equal(wrong.status, 403);
    // envd's own port relies on the envd access token instead.
    assert.equal((await dataRequest(c, { sandboxId: sbx.sandboxId, port: 49983, path: '/health' })).status, 204);
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
  });

forEachSdk(c, 'a header rule adds the secret at the egress to plain HTTP; the sandbox never sees it',
  { timeout: 180_000 }, async ({ create }) => {
    const secret = `Bearer s3cret-${randomBytes(8).toString('hex')}`;
    const sha = createHash('sha256').update(secret).digest('hex');
    const sbx = await create({ network: {
      rules: { 'api.example.test': [{ transform: { headers: { Authorization: secret, 'X-Cube-Rule': 'yes' } } }] },
    } });
    const r = await probe(sbx, {
      api: ['tcp', 'api.example.test', PORTS.http], apiOdd: ['tcp', 'api.example.test', PORTS.odd],
      web: ['tcp', 'web.example.test', PORTS.http],
    });
    ok(r, 'api'); ok(r, 'apiOdd'); ok(r, 'web');
    const api80 = JSON.parse(r.api.body).headers;
    assert.equal(api80.authorization_sha256, sha, `the secret was not injected: ${JSON.stringify(api80)}`);
    assert.equal(api80['x-cube-rule'], 'yes');
    assert.equal(JSON.parse(r.apiOdd.body).headers.authorization_sha256, undefined, 'injected on a non-HTTP port');
    assert.equal(JSON.parse(r.web.body).headers.authorization_sha256, undefined, 'injected for another host');
    // The secret is nowhere the sandbox can look: its environment, files cubed wrote, what the API returns.
    const token = secret.slice(7);
    const inside = await sbx.commands.run('cat /proc/1/environ /etc/resolv.conf; env', { user: 'root' });
    assert.ok(!inside.stdout.includes(token));
    const detail = await api(c, 'GET', `/sandboxes/${sbx.sandboxId}`);
    assert.ok(!detail.text.includes(token) && detail.text.includes('***'), detail.text);
    assert.ok(!(await api(c, 'GET', `/sandboxes/${sbx.sandboxId}/network`)).text.includes(token));
    // Rules go with an update: without them, nothing is injected any more.
    await sbx.updateNetwork({});
    const later = await probe(sbx, { api: ['tcp', 'api.example.test', PORTS.http] });
    ok(later, 'api');
    assert.equal(JSON.parse(later.api.body).headers.authorization_sha256, undefined);
  });

ctest(c, 'a DNS flood does not grow the learned map past its limit; cubed stays healthy', { timeout: 180_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, allowInternetAccess: false, network: { allowOut: ['*.example.test'] } });
  try {
    const py = `import socket\nok = 0\nfor i in range(${FLOOD_NAMES}):\n    try:\n        socket.gethostbyname('n%d.flood.example.test' % i); ok += 1\n    except Exception:\n        pass\nprint(ok)`;
    const r = await sbx.commands.run(`python3 -c "${py}"`, { timeoutMs: 120_000 });
    assert.equal(Number(r.stdout.trim()), FLOOD_NAMES, 'every flood name should resolve');
    const n = await netInfo(sbx.sandboxId);
    assert.equal(n.learnedLimit, 1024);
    assert.equal(n.learnedAddresses, 1024, JSON.stringify(n));
    assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n');
  } finally {
    await sbx.kill();
  }
});

ctest(c, 'after kill -9 and a restart of cubed the adopted sandbox keeps its address, policy and header rules; then nothing is left',
  { timeout: 180_000 }, async () => {
    const { Sandbox } = await loadSdk('e2b-2.51');
    const before = instanceLinks();
    const secret = `Bearer r-${randomBytes(6).toString('hex')}`;
    const sbx = await Sandbox.create({ ...c.sdkOpts, network: { denyOut: [ADDR.web], allowPublicTraffic: false,
      rules: { 'api.example.test': [{ transform: { headers: { Authorization: secret } } }] } } });
    const info = await netInfo(sbx.sandboxId);
    await c.kill9();
    await c.restart();
    assert.deepEqual(await netInfo(sbx.sandboxId), info, 'address or policy changed across the restart');
    const r = await probe(sbx, { web: ['tcp', ADDR.web, PORTS.http], api: ['tcp', 'api.example.test', PORTS.http] });
    blocked(r, 'web');
    ok(r, 'api');
    assert.equal(JSON.parse(r.api.body).headers.authorization_sha256, createHash('sha256').update(secret).digest('hex'));
    const again = await Sandbox.connect(sbx.sandboxId, c.sdkOpts);
    assert.equal(again.trafficAccessToken, sbx.trafficAccessToken, 'the traffic token changed');
    assert.equal((await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080 })).status, 403);
    await sbx.kill();
    assert.ok(await waitFor(() => instanceLinks().length === before.length, 5_000), `links left: ${instanceLinks()}`);
  });

ctest(c, 'kill removes every link of the sandbox', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const before = instanceLinks().length;
  const s = await Sandbox.create({ ...c.sdkOpts, network: { denyOut: [ADDR.web] } });
  assert.equal(instanceLinks().length, before + 1);
  await s.kill();
  assert.ok(await waitFor(() => instanceLinks().length === before, 5_000), `links left: ${instanceLinks()}`);
});

ctest(c, 'a cubed that stops with no sandbox left removes its nftables table; with sandboxes it keeps it', async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const c2 = new Cubed({ extraArgs: ['--net-pool', '198.19.255.0/26'] });
  await c2.start();
  try {
    const inst = fs.readFileSync(path.join(c2.stateDir, 'instance-id'), 'utf8').trim();
    const table = async () => (await run('nft', ['list', 'table', 'ip', `cube_${inst}`])).code === 0;
    assert.ok(await table(), 'no table while running');
    const s = await Sandbox.create(c2.sdkOpts);
    await c2.restart();                       // SIGTERM with a sandbox running: the table stays
    assert.ok(await table(), 'the table went away under a running sandbox');
    await s.kill();
    await c2.signalAndWait('SIGTERM', 10_000); // nothing left: the table goes
    assert.equal(await table(), false, 'the table outlived the last sandbox');
  } finally {
    await c2.stop();
  }
});
