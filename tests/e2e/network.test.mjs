// Data-plane proxy: user servers reachable by host routing (sbx.getHost) and header routing, per-request
// routing on keep-alive connections, JSON errors for unknown sandboxes and closed ports, Upgrade pass-through.

import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { useCubed, forEachSdk, ctest, dataRequest, waitFor, sha256, loadSdk, DOMAIN, api } from './harness.mjs';

const c = useCubed();

async function startHttpServer(sbx, port, content) {
  await sbx.files.write(`/tmp/www${port}/hello.txt`, content);
  await sbx.commands.run(`cd /tmp/www${port} && exec python3 -m http.server ${port}`, { background: true, timeoutMs: 0 });
  const up = await waitFor(async () => {
    const r = await dataRequest(c, { sandboxId: sbx.sandboxId, port, path: '/hello.txt', timeoutMs: 2_000 });
    return r.status === 200;
  }, 15_000, 150);
  assert.ok(up, `python3 -m http.server ${port} never became reachable through the proxy`);
}

forEachSdk(c, 'python http.server reachable via sbx.getHost(8080) and via routing headers', async ({ create }) => {
  const sbx = await create();
  const content = `hello from ${sbx.sandboxId}\n`;
  await startHttpServer(sbx, 8080, content);
  const host = sbx.getHost(8080);
  assert.equal(host, `8080-${sbx.sandboxId}.${DOMAIN}`);
  const byHost = await dataRequest(c, { host, path: '/hello.txt' });
  assert.equal(byHost.status, 200);
  assert.equal(byHost.text, content);
  const byHeaders = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080, route: 'headers', path: '/hello.txt' });
  assert.equal(byHeaders.status, 200);
  assert.equal(byHeaders.text, content);
  // Legacy "<port>-<id>-<clientID>.<domain>" form still routes (extra parts ignored).
  const legacy = await dataRequest(c, { host: `8080-${sbx.sandboxId}-6532622b.${DOMAIN}`, path: '/hello.txt' });
  assert.equal(legacy.status, 200);
  // envd itself by host routing: /health needs no token.
  const health = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 49983, path: '/health' });
  assert.equal(health.status, 204);
});

ctest(c, 'a 30 MB download streams through the proxy intact', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    await startHttpServer(sbx, 8080, 'x');
    const data = randomBytes(30 * 1024 * 1024);
    await sbx.files.write('/tmp/www8080/big.bin', data);
    const r = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8080, path: '/big.bin', timeoutMs: 60_000 });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, data.length);
    assert.equal(sha256(r.body), sha256(data));
  } finally {
    await sbx.kill().catch(() => {});
  }
});

ctest(c, 'routing is per request on one keep-alive connection', { timeout: 120_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const a = await Sandbox.create(c.sdkOpts);
  const b = await Sandbox.create(c.sdkOpts);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await startHttpServer(a, 8080, 'AAA');
    await startHttpServer(b, 8080, 'BBB');
    const seq = [a, b, a, b, b, a];
    const ports = [];
    for (const [i, s] of seq.entries()) {
      const route = i % 2 ? 'headers' : 'host';
      const r = await dataRequest(c, { sandboxId: s.sandboxId, port: 8080, path: '/hello.txt', agent, route });
      assert.equal(r.status, 200);
      assert.equal(r.text, s === a ? 'AAA' : 'BBB', `request ${i} (${route}) went to the wrong sandbox`);
      ports.push(r.socket.localPort);
    }
    // envd and a user port of different sandboxes on the same connection too.
    const h = await dataRequest(c, { sandboxId: b.sandboxId, port: 49983, path: '/health', agent });
    assert.equal(h.status, 204);
    ports.push(h.socket.localPort);
    assert.equal(new Set(ports).size, 1, `requests used several client connections: ${ports}`);
  } finally {
    agent.destroy();
    await Promise.all([a.kill().catch(() => {}), b.kill().catch(() => {})]);
  }
});

ctest(c, 'unknown sandbox and closed port get 502 JSON errors', async () => {
  for (const route of ['host', 'headers']) {
    const r = await dataRequest(c, { sandboxId: 'inosuchsandbox000000x', port: 8080, path: '/', route });
    assert.equal(r.status, 502, `${route}: ${r.status} ${r.text}`);
    assert.match(String(r.headers['content-type']), /application\/json/);
    assert.equal(r.json?.code, 502);
    assert.equal(r.json?.sandboxId, 'inosuchsandbox000000x');
    assert.equal(r.json?.message, 'The sandbox was not found');
  }
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    const r = await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8081, path: '/' });
    assert.equal(r.status, 502, `${r.status} ${r.text}`);
    assert.equal(r.json?.code, 502);
    assert.equal(r.json?.port, 8081);
    assert.equal(r.json?.sandboxId, sbx.sandboxId);
    assert.match(r.json?.message ?? '', /port is not open/);
  } finally {
    await sbx.kill().catch(() => {});
  }
  // Bad host forms with no routing headers are 400 (spec 2.3), never a hang.
  for (const host of ['nodots', 'abc.cube.test', `notaport-x.${DOMAIN}`]) {
    const r = await dataRequest(c, { host, path: '/' });
    assert.equal(r.status, 400, `Host ${host}: ${r.status} ${r.text}`);
  }
  // Still serving.
  assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
});

const UPGRADE_ECHO = `
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8090)); s.listen(16)
def handle(c):
    buf = b''
    while b'\\r\\n\\r\\n' not in buf:
        d = c.recv(4096)
        if not d: return
        buf += d
    head, rest = buf.split(b'\\r\\n\\r\\n', 1)
    if b'upgrade: echo' not in head.lower():
        c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nplain'); c.close(); return
    c.sendall(b'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n')
    if rest: c.sendall(rest)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(b'echo:' + d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
`;

function upgradeRequest(host) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: c.proxyPort, path: '/ws', setHost: false, agent: false,
      headers: { Host: host, Connection: 'Upgrade', Upgrade: 'echo' } });
    const timer = setTimeout(() => { req.destroy(); reject(new Error('upgrade timed out')); }, 15_000);
    req.on('response', (res) => { clearTimeout(timer); reject(new Error(`no upgrade, status ${res.statusCode}`)); res.resume(); });
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.on('upgrade', (res, socket, head) => {
      let got = head.toString();
      socket.on('data', (d) => { got += d.toString(); if (got.includes('echo:second')) { clearTimeout(timer); socket.destroy(); resolve({ res, got }); } });
      socket.write('first');
      setTimeout(() => socket.write('second'), 200);
    });
    req.end();
  });
}

ctest(c, 'Upgrade (WebSocket-style) passes through both ways', { timeout: 60_000 }, async () => {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create(c.sdkOpts);
  try {
    await sbx.files.write('/tmp/upgrade_echo.py', UPGRADE_ECHO);
    await sbx.commands.run('python3 /tmp/upgrade_echo.py', { background: true, timeoutMs: 0 });
    const up = await waitFor(async () => (await dataRequest(c, { sandboxId: sbx.sandboxId, port: 8090, path: '/', timeoutMs: 2_000 })).text === 'plain', 10_000, 150);
    assert.ok(up, 'upgrade echo server not reachable');
    const { res, got } = await upgradeRequest(sbx.getHost(8090));
    assert.equal(res.statusCode, 101);
    assert.equal(String(res.headers.upgrade).toLowerCase(), 'echo');
    assert.match(got, /echo:first/);
    assert.match(got, /echo:second/);
  } finally {
    await sbx.kill().catch(() => {});
  }
});
