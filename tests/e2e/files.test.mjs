// Filesystem through the unmodified SDK: read/write (text, bytes, 50 MB, several files), list with depth,
// exists, getInfo fields, makeDir, rename, remove, watchDir, signed upload/download URLs, upload size limit.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { useCubed, forEachSdk, ctest, Cubed, dataRequest, sha256, waitFor, sleep, api, loadSdk } from './harness.mjs';

const c = useCubed();

forEachSdk(c, 'write and read text, bytes and relative paths', async ({ create }) => {
  const sbx = await create();
  const info = await sbx.files.write('/home/user/dir1/a.txt', 'hello ünïcode\n');
  assert.equal(info.path, '/home/user/dir1/a.txt');
  assert.equal(info.name, 'a.txt');
  assert.equal(info.type, 'file');
  assert.equal(await sbx.files.read('/home/user/dir1/a.txt'), 'hello ünïcode\n');
  // Parent directory created and owned by the acting user.
  assert.equal((await sbx.commands.run('stat -c %U:%G /home/user/dir1 /home/user/dir1/a.txt')).stdout, 'user:user\nuser:user\n');

  const bytes = new Uint8Array(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
  await sbx.files.write('/tmp/all-bytes.bin', bytes.buffer);
  const back = await sbx.files.read('/tmp/all-bytes.bin', { format: 'bytes' });
  assert.ok(back instanceof Uint8Array);
  assert.deepEqual(Buffer.from(back), Buffer.from(bytes));

  await sbx.files.write('rel.txt', 'relative');
  assert.equal((await sbx.commands.run('cat /home/user/rel.txt')).stdout, 'relative');
  assert.equal(await sbx.files.read('~/rel.txt'), 'relative');

  // Empty file round trip, overwrite truncates.
  await sbx.files.write('/tmp/empty', '');
  assert.equal(await sbx.files.read('/tmp/empty'), '');
  await sbx.files.write('/tmp/over', 'long long content');
  await sbx.files.write('/tmp/over', 'short');
  assert.equal(await sbx.files.read('/tmp/over'), 'short');

  // root-owned file written as root
  await sbx.files.write('/root/r.txt', 'r', { user: 'root' });
  assert.equal((await sbx.commands.run('stat -c %U /root/r.txt', { user: 'root' })).stdout, 'root\n');
});

forEachSdk(c, 'read of a missing file is FileNotFoundError; writing as user into /root fails', async ({ create, sdk }) => {
  const sbx = await create();
  await assert.rejects(sbx.files.read('/nope/missing.txt'), sdk.FileNotFoundError);
  await assert.rejects(sbx.files.write('/root/denied.txt', 'x'), sdk.SandboxError);
});

forEachSdk(c, '50 MB write and read are intact', { timeout: 180_000 }, async ({ create }) => {
  const sbx = await create();
  const data = randomBytes(50 * 1024 * 1024);
  const want = sha256(data);
  await sbx.files.write('/tmp/big.bin', data);
  const r = await sbx.commands.run('stat -c %s /tmp/big.bin; sha256sum /tmp/big.bin | cut -d" " -f1');
  assert.equal(r.stdout, `${data.length}\n${want}\n`);
  const back = await sbx.files.read('/tmp/big.bin', { format: 'bytes' });
  assert.equal(back.length, data.length);
  assert.equal(sha256(back), want);
});

forEachSdk(c, 'multiple files in one write', async ({ create }) => {
  const sbx = await create();
  const res = await sbx.files.write([
    { path: '/tmp/multi/one.txt', data: 'one' },
    { path: '/tmp/multi/nested/two.bin', data: new Uint8Array([0, 1, 2, 255]).buffer },
    { path: 'three.txt', data: 'three' },
  ]);
  assert.ok(Array.isArray(res));
  assert.deepEqual(res.map((w) => w.path), ['/tmp/multi/one.txt', '/tmp/multi/nested/two.bin', '/home/user/three.txt']);
  assert.deepEqual(res.map((w) => w.name), ['one.txt', 'two.bin', 'three.txt']);
  assert.equal(await sbx.files.read('/tmp/multi/one.txt'), 'one');
  assert.deepEqual([...await sbx.files.read('/tmp/multi/nested/two.bin', { format: 'bytes' })], [0, 1, 2, 255]);
  assert.equal(await sbx.files.read('/home/user/three.txt'), 'three');
  const res2 = await sbx.files.writeFiles([{ path: '/tmp/wf/a', data: 'A' }, { path: '/tmp/wf/b', data: 'B' }]);
  assert.equal(res2.length, 2);
  assert.equal((await sbx.commands.run('cat /tmp/wf/a /tmp/wf/b')).stdout, 'AB');
});

forEachSdk(c, 'list with depth, exists', async ({ create, sdk }) => {
  const sbx = await create();
  await sbx.commands.run('mkdir -p /tmp/tree/a/b && echo c > /tmp/tree/a/b/c.txt && echo x > /tmp/tree/x.txt && echo y > /tmp/tree/a/y.txt');
  const d1 = await sbx.files.list('/tmp/tree');
  assert.deepEqual(d1.map((e) => e.name).sort(), ['a', 'x.txt']);
  const a = d1.find((e) => e.name === 'a');
  assert.equal(a.type, 'dir');
  assert.equal(a.path, '/tmp/tree/a');
  const x = d1.find((e) => e.name === 'x.txt');
  assert.equal(x.type, 'file');
  assert.equal(x.size, 2);
  const d2 = await sbx.files.list('/tmp/tree', { depth: 2 });
  assert.deepEqual(d2.map((e) => e.path).sort(), ['/tmp/tree/a', '/tmp/tree/a/b', '/tmp/tree/a/y.txt', '/tmp/tree/x.txt']);
  const d3 = await sbx.files.list('/tmp/tree', { depth: 3 });
  assert.deepEqual(d3.map((e) => e.path).sort(),
    ['/tmp/tree/a', '/tmp/tree/a/b', '/tmp/tree/a/b/c.txt', '/tmp/tree/a/y.txt', '/tmp/tree/x.txt']);
  await assert.rejects(sbx.files.list('/tmp/tree/missing'), sdk.FileNotFoundError);
  await assert.rejects(sbx.files.list('/tmp/tree/x.txt'), sdk.SandboxError);

  assert.equal(await sbx.files.exists('/tmp/tree/a/b/c.txt'), true);
  assert.equal(await sbx.files.exists('/tmp/tree/a'), true);
  assert.equal(await sbx.files.exists('/tmp/tree/zzz'), false);
});

forEachSdk(c, 'getInfo: size, mode, permissions, owner, group, modifiedTime, symlinkTarget', async ({ create, sdk }) => {
  const sbx = await create();
  await sbx.files.write('/tmp/info.txt', 'abcdef');
  await sbx.commands.run('chmod 640 /tmp/info.txt && touch -d "2021-03-04 05:06:07 UTC" /tmp/info.txt && ln -s /tmp/info.txt /tmp/info.link && mkdir -p /tmp/infodir && chmod 750 /tmp/infodir');
  const f = await sbx.files.getInfo('/tmp/info.txt');
  assert.equal(f.name, 'info.txt');
  assert.equal(f.path, '/tmp/info.txt');
  assert.equal(f.type, 'file');
  assert.equal(f.size, 6);
  assert.equal(f.mode, 0o640);
  assert.equal(f.permissions, '-rw-r-----');
  assert.equal(f.owner, 'user');
  assert.equal(f.group, 'user');
  assert.ok(f.modifiedTime instanceof Date);
  assert.equal(f.modifiedTime.toISOString(), '2021-03-04T05:06:07.000Z');
  assert.ok(!f.symlinkTarget, `regular file has symlinkTarget ${f.symlinkTarget}`);

  const l = await sbx.files.getInfo('/tmp/info.link');
  assert.equal(l.symlinkTarget, '/tmp/info.txt');
  assert.equal(l.type, 'file', 'symlink reports its target type');
  assert.equal(l.name, 'info.link');
  assert.match(l.permissions, /^L/);

  const d = await sbx.files.getInfo('/tmp/infodir');
  assert.equal(d.type, 'dir');
  assert.equal(d.mode, 0o750);
  assert.equal(d.permissions, 'drwxr-x---');

  const etc = await sbx.files.getInfo('/etc/passwd');
  assert.equal(etc.owner, 'root');
  assert.equal(etc.group, 'root');
  await assert.rejects(sbx.files.getInfo('/tmp/none'), sdk.FileNotFoundError);
});

forEachSdk(c, 'makeDir, rename, remove', async ({ create }) => {
  const sbx = await create();
  assert.equal(await sbx.files.makeDir('/tmp/md/x/y'), true);
  assert.equal(await sbx.files.makeDir('/tmp/md/x/y'), false);
  assert.equal((await sbx.commands.run('stat -c %U:%F /tmp/md/x/y')).stdout, 'user:directory\n');

  await sbx.files.write('/tmp/md/src.txt', 'moving');
  const moved = await sbx.files.rename('/tmp/md/src.txt', '/tmp/md/newparent/dst.txt');
  assert.equal(moved.path, '/tmp/md/newparent/dst.txt');
  assert.equal(moved.name, 'dst.txt');
  assert.equal(moved.type, 'file');
  assert.equal(await sbx.files.exists('/tmp/md/src.txt'), false);
  assert.equal(await sbx.files.read('/tmp/md/newparent/dst.txt'), 'moving');
  const movedDir = await sbx.files.rename('/tmp/md/x', '/tmp/md/x2');
  assert.equal(movedDir.type, 'dir');
  assert.equal(await sbx.files.exists('/tmp/md/x2/y'), true);

  await sbx.files.remove('/tmp/md/newparent/dst.txt');
  assert.equal(await sbx.files.exists('/tmp/md/newparent/dst.txt'), false);
  await sbx.files.remove('/tmp/md'); // recursive
  assert.equal(await sbx.files.exists('/tmp/md'), false);
  await sbx.files.remove('/tmp/md/never-existed'); // missing path is not an error
});

forEachSdk(c, 'watchDir reports create, write, rename, remove, recursively', { timeout: 60_000 }, async ({ create, sdk }) => {
  const sbx = await create();
  await sbx.files.makeDir('/tmp/w/sub');
  const events = [];
  const handle = await sbx.files.watchDir('/tmp/w', (ev) => { events.push(ev); },
    { recursive: true, timeoutMs: 30_000 });
  await sleep(200);
  await sbx.files.write('/tmp/w/a.txt', 'x');
  await sbx.commands.run('echo more >> /tmp/w/a.txt');
  await sbx.files.rename('/tmp/w/a.txt', '/tmp/w/b.txt');
  await sbx.files.remove('/tmp/w/b.txt');
  await sbx.commands.run('echo deep > /tmp/w/sub/deep.txt');
  const T = sdk.FilesystemEventType;
  const has = (type, name) => events.some((e) => e.type === type && e.name === name);
  const ok = await waitFor(() => has(T.CREATE, 'a.txt') && has(T.WRITE, 'a.txt') && has(T.RENAME, 'a.txt')
    && has(T.REMOVE, 'b.txt') && has(T.CREATE, 'sub/deep.txt') && has(T.WRITE, 'sub/deep.txt'), 10_000);
  assert.ok(ok, `missing events; got ${JSON.stringify(events)}`);
  const idx = (type, name) => events.findIndex((e) => e.type === type && e.name === name);
  assert.ok(idx(T.CREATE, 'a.txt') < idx(T.RENAME, 'a.txt'), 'create after rename');
  assert.ok(idx(T.RENAME, 'a.txt') < idx(T.REMOVE, 'b.txt'), 'rename after remove');
  await handle.stop();
  const n = events.length;
  await sbx.files.write('/tmp/w/after-stop.txt', 'x');
  await sleep(500);
  assert.equal(events.length, n, 'events delivered after stop()');

  // Non-recursive watch does not report changes inside subdirectories; a missing dir is an error.
  const flat = [];
  const h2 = await sbx.files.watchDir('/tmp/w', (ev) => flat.push(ev), { timeoutMs: 30_000 });
  await sleep(200);
  await sbx.commands.run('echo z > /tmp/w/sub/flat-deep.txt; echo z > /tmp/w/flat-top.txt');
  assert.ok(await waitFor(() => flat.some((e) => e.name === 'flat-top.txt'), 5_000), JSON.stringify(flat));
  assert.ok(!flat.some((e) => e.name.includes('flat-deep')), `non-recursive watch saw ${JSON.stringify(flat)}`);
  await h2.stop();
  await assert.rejects(sbx.files.watchDir('/tmp/not-there', () => {}, { timeoutMs: 5_000 }), sdk.SandboxError);
});

// Signed URLs: in single-URL mode they point at the shared sandboxUrl and carry no routing headers
// (spec 2.8), so we replay them against the proxy with the host-routing Host header.
async function multipartBody(filename, content) {
  const form = new FormData();
  form.append('file', new Blob([content]), filename);
  const req = new Request('http://local/', { method: 'POST', body: form });
  return { body: Buffer.from(await req.arrayBuffer()), type: req.headers.get('content-type') };
}

function replay(sbx, url, init = {}) {
  const u = new URL(url);
  return dataRequest(c, { sandboxId: sbx.sandboxId, port: 49983, path: u.pathname + u.search, ...init });
}

forEachSdk(c, 'uploadUrl and downloadUrl are signed and work without the access token', async ({ create }) => {
  const sbx = await create();
  const up = await sbx.uploadUrl('/tmp/signed.txt');
  assert.match(up, /[?&]signature=v1_/);
  const mp = await multipartBody('/tmp/signed.txt', 'via signed url');
  const r = await replay(sbx, up, { method: 'POST', body: mp.body, headers: { 'Content-Type': mp.type } });
  assert.equal(r.status, 200, `upload: ${r.status} ${r.text}`);
  assert.equal(r.json?.[0]?.path, '/tmp/signed.txt');
  assert.equal(await sbx.files.read('/tmp/signed.txt'), 'via signed url');

  const down = await sbx.downloadUrl('/tmp/signed.txt');
  const d = await replay(sbx, down);
  assert.equal(d.status, 200);
  assert.equal(d.text, 'via signed url');

  // Tampered signature, signature for another path, and no signature at all are refused.
  const bad = new URL(down); bad.searchParams.set('signature', 'v1_AAAA');
  assert.equal((await replay(sbx, bad.toString())).status, 401);
  const other = new URL(down); other.searchParams.set('path', '/etc/shadow');
  assert.equal((await replay(sbx, other.toString())).status, 401);
  const none = new URL(down); none.searchParams.delete('signature');
  const n = await replay(sbx, none.toString());
  assert.equal(n.status, 401);
  assert.equal(n.json?.code, 401);
  // A read signature does not authorise a write.
  const wrongOp = await replay(sbx, down, { method: 'POST', body: mp.body, headers: { 'Content-Type': mp.type } });
  assert.equal(wrongOp.status, 401);

  // Expiring signature: valid now, refused once expired.
  const exp = await sbx.downloadUrl('/tmp/signed.txt', { useSignatureExpiration: 1 });
  assert.match(exp, /signature_expiration=\d+/);
  assert.equal((await replay(sbx, exp)).status, 200);
  await sleep(2_200);
  const e = await replay(sbx, exp);
  assert.equal(e.status, 401);
  assert.match(e.json?.message ?? '', /expired/);
});

// Upload limit: the configured maximum upload size is enforced with a documented JSON error.
// The limit is set through a cubed flag; CUBE_E2E_UPLOAD_LIMIT_ARGS overrides the flag spelling.
const LIMIT = 1024 * 1024;
const limitArgs = (process.env.CUBE_E2E_UPLOAD_LIMIT_ARGS ?? `--max-upload-bytes ${LIMIT}`).split(' ').filter(Boolean);
const limited = new Cubed({ extraArgs: limitArgs });

ctest(limited, 'an upload past the configured limit gets 413 JSON and the sandbox keeps working', { timeout: 120_000 }, async () => {
  await limited.start();
  try {
    const sdk = await loadSdk('e2b-2.51');
    const sbx = await sdk.Sandbox.create(limited.sdkOpts);
    await sbx.files.write('/tmp/under.bin', randomBytes(LIMIT - 4096));
    await assert.rejects(sbx.files.write('/tmp/over.bin', randomBytes(LIMIT * 3)), (e) => {
      assert.ok(e instanceof sdk.SandboxError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.match(e.message, /413/);
      return true;
    });
    const tok = sbx.envdAccessToken;
    const raw = await dataRequest(limited, { sandboxId: sbx.sandboxId, port: 49983, method: 'POST',
      path: '/files?path=%2Ftmp%2Fraw.bin', body: randomBytes(LIMIT * 2),
      headers: { 'Content-Type': 'application/octet-stream', 'X-Access-Token': tok } }).catch((e) => e);
    assert.ok(!(raw instanceof Error), `raw oversized upload: ${raw?.message}`);
    assert.equal(raw.status, 413, raw.text);
    assert.equal(raw.json?.code, 413);
    assert.equal(typeof raw.json?.message, 'string');
    // Still serving.
    assert.equal((await sbx.commands.run('stat -c %s /tmp/under.bin')).stdout, `${LIMIT - 4096}\n`);
    assert.equal((await api(limited, 'GET', '/health', { key: null })).status, 204);
  } finally {
    await limited.stop();
  }
});
