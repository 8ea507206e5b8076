// Templates from OCI images, end to end: images built here (umoci, plus hand-made layer tarballs for
// whiteouts, opaque dirs and hostile entries) are pushed with skopeo to real docker-registry instances on
// loopback (plain HTTP, htpasswd basic auth, HTTPS with a CA made here by openssl); `cubemastercli tpl
// create-from-image` and the job API build templates from them; the unmodified e2b SDK runs commands in a
// sandbox made from one by its alias. Also: layer sharing, a multi-platform index with zstd layers, kill -9
// of cubed during a pull and resume with a Range request, template delete refused while in use.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { useCubed, ctest, loadSdk, api, run, bin, freePort, waitFor, sleep, sha256 } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-tpl-e2e-'));
const tplDir = path.join(work, 'templates');
fs.mkdirSync(tplDir);
// The SDK builder test builds on `base` (the harness's template, already shifted): link it in.
import { templatesDir } from './harness.mjs';
fs.symlinkSync(path.join(templatesDir, 'base'), path.join(tplDir, 'base'));
const c = useCubed({ extraArgs: ['--templates-dir', tplDir] });
const layout = path.join(work, 'oci');
const children = [];
const escape = path.join(os.tmpdir(), `cube-escape-${process.pid}`);
let plain, basic, tls, bearer, throttle, tokenSrv;
const tokenRequests = [];
const rangeRequests = [];

async function sh(file, args, opts = {}) {
  const r = await run(file, args, { timeoutMs: 60_000, ...opts });
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function mklayer(name, spec) {
  const specPath = path.join(work, `${name}.json`);
  const out = path.join(work, `${name}.tar`);
  fs.writeFileSync(specPath, JSON.stringify(spec));
  await sh('python3', [path.join(here, 'mklayer.py'), out, specPath]);
  return out;
}

// tag := from + one verbatim layer.
async function addLayer(from, tag, spec) {
  await sh('umoci', ['raw', 'add-layer', '--image', `${layout}:${from}`, '--tag', tag, await mklayer(tag, spec)]);
}

function startRegistry(name, port, extra = '') {
  const dir = path.join(work, `reg-${name}`);
  fs.mkdirSync(dir, { recursive: true });
  const cfg = path.join(dir, 'config.yml');
  fs.writeFileSync(cfg, `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${dir}/data}}\n` +
    `http:\n  addr: 127.0.0.1:${port}\n${extra}`);
  const p = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'log'), 'a')] });
  children.push(p);
  return `127.0.0.1:${port}`;
}

async function registryUp(url) {
  const ok = await waitFor(async () => {
    try { const r = await fetch(url, { signal: AbortSignal.timeout(1000) }); return r.status === 200 || r.status === 401; } catch { return false; }
  }, 15_000);
  if (!ok) throw new Error(`registry at ${url} did not come up`);
}

async function push(tag, dest, creds = []) {
  await sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...creds, `oci:${layout}:${tag}`, `docker://${dest}`]);
}

// Throttled pass-through to the plain registry: blob bodies at ~2 MB/s, Range headers recorded.
function startThrottle(target, port) {
  const srv = http.createServer((req, res) => {
    if (req.headers.range) rangeRequests.push({ url: req.url, range: req.headers.range });
    const up = http.request({ host: '127.0.0.1', port: Number(target.split(':')[1]), method: req.method, path: req.url,
      headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (!req.url.includes('/blobs/')) { ur.pipe(res); return; }
      ur.on('data', (d) => { res.write(d); ur.pause(); setTimeout(() => ur.resume(), Math.ceil(d.length / 2048)); });
      ur.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  srv.listen(port, '127.0.0.1');
  return srv;
}

// A token service for the registry's Bearer auth (the OCI distribution token protocol): anonymous callers
// may pull public/*, alice may do anything. Tokens are RS256 JWTs carrying the signing certificate (x5c),
// which the registry trusts through its rootcertbundle.
function startTokenService(port, keyPem, certPem) {
  const der = crypto.createPublicKey(keyPem) && Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const auth = req.headers.authorization ?? '';
    const user = auth === `Basic ${Buffer.from('alice:s3cret').toString('base64')}` ? 'alice' : '';
    tokenRequests.push({ scope: u.searchParams.get('scope'), user });
    if (auth && !user) { res.writeHead(401); res.end(); return; }
    const access = [];
    for (const sc of (u.searchParams.getAll('scope'))) {
      const [type, name, actions] = sc.split(':');
      if (user || name.startsWith('public/')) access.push({ type, name, actions: actions.split(',') });
    }
    const now = Math.floor(Date.now() / 1000);
    const head = b64({ typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] });
    const body = b64({ iss: 'cube-test-issuer', sub: user, aud: u.searchParams.get('service'), exp: now + 300,
      nbf: now - 10, iat: now, jti: crypto.randomUUID(), access });
    const sig = crypto.createSign('RSA-SHA256').update(`${head}.${body}`).sign(keyPem).toString('base64url');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token: `${head}.${body}.${sig}` }));
  });
  srv.listen(port, '127.0.0.1');
  return srv;
}

before(async () => {
  // Base image: busybox, passwd with root and user, data to delete and an opaque dir to replace.
  await sh('umoci', ['init', '--layout', layout]);
  await sh('umoci', ['new', '--image', `${layout}:empty`]);
  const bb = fs.readFileSync('/bin/busybox');
  const base = [
    { name: 'bin', type: 'dir' }, { name: 'bin/busybox', type: 'file', mode: 0o755, data: '' },
    ...['sh', 'ls', 'cat', 'echo', 'id', 'pwd', 'stat', 'wget', 'dd', 'httpd', 'test', 'env']
      .map((a) => ({ name: `bin/${a}`, type: 'symlink', link: 'busybox' })),
    // envd runs commands with /bin/bash -l -c: busybox's ash stands in.
    { name: 'bin/bash', type: 'file', mode: 0o755, data: '#!/bin/sh\nexec /bin/sh "$@"\n' },
    { name: 'etc', type: 'dir' },
    { name: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' },
    { name: 'etc/group', data: 'root:x:0:\nuser:x:1000:\n' },
    { name: 'tmp', type: 'dir', mode: 0o1777 }, { name: 'root', type: 'dir', mode: 0o700 },
    { name: 'home', type: 'dir' }, { name: 'home/user', type: 'dir', uid: 1000, gid: 1000 },
    { name: 'data', type: 'dir' }, { name: 'data/keep', data: 'keep\n' }, { name: 'data/gone', data: 'gone\n' },
    { name: 'opq', type: 'dir' }, { name: 'opq/old', data: 'old\n' },
  ];
  // busybox goes in as real bytes: mklayer takes text, so write the binary entry through a second layer file.
  const baseTar = await mklayer('base', base.filter((e) => e.name !== 'bin/busybox'));
  const bbDir = path.join(work, 'bbroot');
  fs.mkdirSync(path.join(bbDir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(bbDir, 'bin', 'busybox'), bb, { mode: 0o755 });
  const bbTar = path.join(work, 'busybox.tar');
  await sh('tar', ['-C', bbDir, '-cf', bbTar, '--owner=0', '--group=0', 'bin/busybox']);
  await sh('umoci', ['raw', 'add-layer', '--image', `${layout}:empty`, '--tag', 'bb', bbTar]);
  await sh('umoci', ['raw', 'add-layer', '--image', `${layout}:bb`, '--tag', 'base', baseTar]);

  // The app: a whiteout, an opaque dir, setuid + hard link, a device node (skipped), and a config.
  await addLayer('base', 'app', [
    { name: 'data', type: 'dir' }, { name: 'data/gone', type: 'whiteout' },
    { name: 'data/evil', type: 'chardev' },
    { name: 'opq', type: 'dir' }, { name: 'opq', type: 'opaque' }, { name: 'opq/new', data: 'new\n' },
    { name: 'srv', type: 'dir', uid: 1000, gid: 1000 },
    { name: 'srv/index.html', data: 'hello from layer 3\n', uid: 1000, gid: 1000 },
    { name: 'bin/suid', data: 'x', mode: 0o4755 }, { name: 'bin/hard', type: 'hardlink', link: 'bin/suid' },
  ]);
  await sh('umoci', ['config', '--image', `${layout}:app`, '--config.env', 'FOO=bar', '--config.workingdir', '/srv',
    '--config.user', 'user', '--config.exposedports', '8080/tcp',
    '--config.cmd', 'sh', '--config.cmd', '-c',
    '--config.cmd', 'pwd > /tmp/cwd; id -un > /tmp/who; exec httpd -f -p 8080 -h /srv']);

  // Hostile layers.
  await addLayer('base', 'dotdot', [{ name: `../../../../..${escape}-dotdot`, data: 'x' }]);
  await addLayer('base', 'abs', [{ name: `${escape}-abs`, data: 'x' }]);
  await addLayer('base', 'symlink', [{ name: 'link', type: 'symlink', link: os.tmpdir() },
    { name: `link/${path.basename(escape)}-link`, data: 'x' }]);
  await addLayer('base', 'fat', [{ name: 'fat', size_random: 2 << 20 }]);
  // Big random layer for the interrupted pull.
  await addLayer('base', 'big', [{ name: 'big', size_random: 12 << 20 }]);

  // A multi-platform index: arm64 listed first, amd64 second.
  await addLayer('base', 'amd', [{ name: 'arch', data: 'amd64\n' }]);
  await addLayer('base', 'arm', [{ name: 'arch', data: 'arm64\n' }]);
  const idx = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
  const desc = (tag, arch) => {
    const m = idx.manifests.find((x) => x.annotations['org.opencontainers.image.ref.name'] === tag);
    return { mediaType: m.mediaType, digest: m.digest, size: m.size, platform: { os: 'linux', architecture: arch } };
  };
  const index = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [desc('arm', 'arm64'), desc('amd', 'amd64')] });
  const ih = sha256(Buffer.from(index));
  fs.writeFileSync(path.join(layout, 'blobs', 'sha256', ih), index);
  idx.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${ih}`, size: index.length,
    annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(idx));

  // Registries: plain, htpasswd (basic auth), HTTPS with our own CA.
  const [p1, p2, p3, p4, p5, p6] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  plain = startRegistry('plain', p1);
  const htpasswd = path.join(work, 'htpasswd');
  await sh('htpasswd', ['-Bbc', htpasswd, 'alice', 's3cret']);
  basic = startRegistry('basic', p2, `auth: {htpasswd: {realm: cube-test, path: ${htpasswd}}}\n`);
  const pki = path.join(work, 'pki');
  fs.mkdirSync(pki);
  await sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=cube test CA',
    '-keyout', `${pki}/ca.key`, '-out', `${pki}/ca.crt`]);
  await sh('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', `${pki}/srv.key`,
    '-out', `${pki}/srv.csr`]);
  fs.writeFileSync(`${pki}/ext`, 'subjectAltName=IP:127.0.0.1\n');
  await sh('openssl', ['x509', '-req', '-in', `${pki}/srv.csr`, '-CA', `${pki}/ca.crt`, '-CAkey', `${pki}/ca.key`,
    '-CAcreateserial', '-days', '1', '-extfile', `${pki}/ext`, '-out', `${pki}/srv.crt`]);
  tls = startRegistry('tls', p3, `  tls: {certificate: ${pki}/srv.crt, key: ${pki}/srv.key}\n`);
  await sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=cube token signer',
    '-keyout', `${pki}/tok.key`, '-out', `${pki}/tok.crt`]);
  tokenSrv = startTokenService(p6, fs.readFileSync(`${pki}/tok.key`, 'utf8'), fs.readFileSync(`${pki}/tok.crt`, 'utf8'));
  bearer = startRegistry('bearer', p5, `auth: {token: {realm: "http://127.0.0.1:${p6}/token", service: cube-test-registry, ` +
    `issuer: cube-test-issuer, rootcertbundle: ${pki}/tok.crt}}\n`);
  await Promise.all([registryUp(`http://${plain}/v2/`), registryUp(`http://${basic}/v2/`), registryUp(`http://${bearer}/v2/`)]);
  const tlsOk = await waitFor(async () => (await run('curl', ['-sf', '--cacert', `${pki}/ca.crt`, `https://${tls}/v2/`])).code === 0, 15_000);
  if (!tlsOk) throw new Error('TLS registry did not come up');

  for (const t of ['app', 'dotdot', 'abs', 'symlink', 'fat', 'big']) await push(t, `${plain}/test/${t}:1`);
  await sh('skopeo', ['copy', '--quiet', '--all', '--dest-tls-verify=false', '--dest-compress-format', 'zstd',
    `oci:${layout}:multi`, `docker://${plain}/test/multi:1`]);
  await push('app', `${basic}/private/app:1`, ['--dest-creds', 'alice:s3cret']);
  await push('app', `${tls}/secure/app:1`);
  await push('app', `${bearer}/public/app:1`, ['--dest-creds', 'alice:s3cret']);
  await push('app', `${bearer}/private/app:1`, ['--dest-creds', 'alice:s3cret']);
  throttle = startThrottle(plain, p4);
  throttle.port = p4;
}, { timeout: 120_000 });

after(() => {
  for (const p of children) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
  throttle?.close();
  tokenSrv?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const cli = (args, opts) => run(bin.cli, ['--socket', c.socket, ...args], { timeoutMs: 90_000, ...opts });

async function job(body) {
  const r = await api(c, 'POST', '/templates/jobs', { body });
  assert.equal(r.status, 202, r.text);
  return r.json;
}

async function finished(jobId, ms = 60_000) {
  const j = await waitFor(async () => {
    const r = await api(c, 'GET', `/templates/jobs/${jobId}`);
    return ['READY', 'FAILED'].includes(r.json?.phase) ? r.json : null;
  }, ms, 200);
  assert.ok(j, `job ${jobId} did not finish`);
  return j;
}

const layerDirs = () => fs.readdirSync(path.join(c.stateDir, 'layers', 'sha256')).sort();

ctest(c, 'tpl create-from-image builds, probes and the SDK runs commands in it by alias', { timeout: 150_000 }, async () => {
  const r = await cli(['tpl', 'create-from-image', '--image', `${plain}/test/app:1`, '--writable-layer-size', '64M',
    '--insecure-registry', '--alias', 'app', '--expose-port', '8080', '--probe', '8080', '--probe-path', '/index.html',
    '--cpu', '500', '--memory', '256', '--env', 'EXTRA=1']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^job j\w+: template tpl\w+$/m);
  for (const ph of ['PULLING', 'UNPACKING', 'PREPARING', 'PROBING', 'READY']) assert.match(r.stdout, new RegExp(`^${ph}`, 'm'));
  assert.match(r.stdout, /layer 0 sha256:\S+ \[#+\] 100%/);

  const list = await api(c, 'GET', '/templates');
  const t = list.json.find((x) => x.aliases.includes('app'));
  assert.ok(t, list.text);
  assert.equal(t.layers.length, 3); // busybox, base, app
  assert.equal(t.cpuCount, 1); // 500 millicores round up to one CPU in the E2B view
  assert.equal(t.memoryMB, 256);
  assert.equal(t.diskSizeMB, 64);
  assert.equal((await api(c, 'GET', '/templates/aliases/app')).json.templateID, t.templateID);
  assert.equal((await api(c, 'GET', `/templates/${t.templateID}`)).json.templateID, t.templateID);
  assert.equal((await api(c, 'GET', '/templates/nope')).status, 404);
  const jobId = r.stdout.match(/^job (j\w+)/m)[1];
  const w = await cli(['tpl', 'watch', '--job-id', jobId]);
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stdout, /^PROBING\nREADY\n/m);
  const ls = await cli(['tpl', 'list']);
  assert.match(ls.stdout, new RegExp(`^${t.templateID}\\s+app\\s+1\\s+256\\s+64\\s+3$`, 'm'));
  const info = JSON.parse((await cli(['tpl', 'info', 'app'])).stdout);
  assert.equal(info.templateID, t.templateID);
  assert.equal((await cli(['tpl', 'info', 'nope'])).code, 1);

  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create('app', c.sdkOpts);
  try {
    const out = async (cmd) => (await sbx.commands.run(cmd, { user: 'root' })).stdout;
    assert.equal(await out('ls -A /data'), 'keep\n');          // whiteout hides "gone", the device was skipped
    assert.equal(await out('ls -A /opq'), 'new\n');            // opaque dir hides "old"
    assert.equal(await out('echo $FOO $EXTRA'), 'bar 1\n');   // image Env + --env
    assert.equal(await out('busybox wget -qO- http://127.0.0.1:8080/index.html'), 'hello from layer 3\n');
    assert.equal(await out('cat /tmp/cwd /tmp/who'), '/srv\nuser\n'); // WorkingDir and User of the start command
    assert.equal(await out('stat -c %a /bin/suid; stat -c %h /bin/hard'), '4755\n2\n');
    assert.equal(await out('stat -c %u:%g /srv/index.html'), '1000:1000\n');
    // The cgroup CPU limit is the template's 500 millicores (v1 cfs quota or v2 cpu.max).
    const inst = fs.readFileSync(path.join(c.stateDir, 'instance-id'), 'utf8').trim();
    const v1 = ['cpu', 'cpu,cpuacct'].map((d) => `/sys/fs/cgroup/${d}/cubesandbox/${inst}/${sbx.sandboxId}/cpu.cfs_quota_us`)
      .find((p) => fs.existsSync(p)) ?? '/nonexistent';
    const v2 = [`/sys/fs/cgroup/cubesandbox/${inst}/${sbx.sandboxId}/cpu.max`,
      `/sys/fs/cgroup/unified/cubesandbox/${inst}/${sbx.sandboxId}/cpu.max`].find((p) => fs.existsSync(p));
    if (fs.existsSync(v1)) {
      const period = Number(fs.readFileSync(v1.replace('quota', 'period'), 'utf8'));
      assert.equal(Number(fs.readFileSync(v1, 'utf8')), period / 2);
    } else if (v2) {
      const [quota, period] = fs.readFileSync(v2, 'utf8').trim().split(' ').map(Number);
      assert.equal(quota, period / 2);
    } else {
      assert.fail(`no cpu cgroup file for ${sbx.sandboxId}`);
    }
    // Memory limit: the template's 256 MB (v1 memory.limit_in_bytes or v2 memory.max).
    const mem = [`/sys/fs/cgroup/memory/cubesandbox/${inst}/${sbx.sandboxId}/memory.limit_in_bytes`,
      `/sys/fs/cgroup/cubesandbox/${inst}/${sbx.sandboxId}/memory.max`,
      `/sys/fs/cgroup/unified/cubesandbox/${inst}/${sbx.sandboxId}/memory.max`].find((p) => fs.existsSync(p));
    assert.ok(mem, 'no memory cgroup file');
    assert.equal(Number(fs.readFileSync(mem, 'utf8')), 256 * 1024 * 1024);
    const dd = await sbx.commands.run('dd if=/dev/zero of=/tmp/fill bs=1M count=100', { user: 'root' }).catch((e) => e);
    assert.match(String(dd.stderr ?? dd.result?.stderr ?? dd), /No space left on device/);

    // In use: delete refused (API 409, CLI exit 1) unless forced.
    const del = await api(c, 'DELETE', `/templates/${t.templateID}`);
    assert.equal(del.status, 409, del.text);
    const cdel = await cli(['tpl', 'delete', 'app']);
    assert.equal(cdel.code, 1);
    assert.match(cdel.stderr, /used by 1 sandbox/);
  } finally {
    await sbx.kill();
  }
});

ctest(c, 'a start command that never serves fails the probe with the reason and its output', async () => {
  const j = await finished((await job({ image: `${plain}/test/app:1`, insecureRegistry: true, alias: 'broken',
    cmd: 'echo broken-start; exit 3', probePort: 8080, probeTimeoutMs: 2000 })).jobID);
  assert.equal(j.phase, 'FAILED');
  assert.match(j.reason, /GET http:\/\/127\.0\.0\.1:8080\/ did not answer 2xx within 2000 ms/);
  assert.match(j.reason, /broken-start/);
  assert.equal((await api(c, 'GET', '/templates/broken')).status, 404);
  assert.deepEqual(j.phases.map((p) => p.phase), ['PULLING', 'UNPACKING', 'PREPARING', 'PROBING', 'FAILED']);
});

ctest(c, 'a second template on stored layers downloads nothing and uses no extra disk', async () => {
  const before = layerDirs();
  const j = await finished((await job({ image: `${plain}/test/app:1`, insecureRegistry: true, alias: 'app2',
    diskSizeMB: 32 })).jobID);
  assert.equal(j.phase, 'READY', j.reason);
  assert.ok(j.layers.every((l) => l.cached), JSON.stringify(j.layers));
  assert.deepEqual(layerDirs(), before);
});

ctest(c, 'multi-platform index with zstd layers: the linux/amd64 image is chosen', async () => {
  const j = await finished((await job({ image: `${plain}/test/multi:1`, insecureRegistry: true })).jobID);
  assert.equal(j.phase, 'READY', j.reason);
  const top = j.layers[j.layers.length - 1].digest.slice(7);
  assert.equal(fs.readFileSync(path.join(c.stateDir, 'layers', 'sha256', top, 'rootfs', 'arch'), 'utf8'), 'amd64\n');
  const m = await fetch(`http://${plain}/v2/test/multi/manifests/${j.manifestDigest}`,
    { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } }).then((r) => r.json());
  assert.ok(m.layers.some((l) => /zstd/.test(l.mediaType)), JSON.stringify(m.layers));
});

ctest(c, 'basic auth and a custom CA', async () => {
  let j = await finished((await job({ image: `${basic}/private/app:1`, insecureRegistry: true })).jobID);
  assert.equal(j.phase, 'FAILED');
  assert.match(j.reason, /requires a user name and password/);
  const r = await cli(['tpl', 'create-from-image', '--image', `${basic}/private/app:1`, '--writable-layer-size', '32M',
    '--insecure-registry', '--registry-user', 'alice', '--registry-password', 's3cret']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^READY/m);
  assert.doesNotMatch(JSON.stringify((await api(c, 'GET', '/templates/jobs')).json), /s3cret/);
  j = await finished((await job({ image: `${tls}/secure/app:1` })).jobID);
  assert.equal(j.phase, 'FAILED');
  assert.match(j.reason, /certificate|SSL/i);
  j = await finished((await job({ image: `${tls}/secure/app:1`, caFile: path.join(work, 'pki', 'ca.crt') })).jobID);
  assert.equal(j.phase, 'READY', j.reason);
});

ctest(c, 'Bearer tokens from the WWW-Authenticate challenge, anonymous and with credentials', async () => {
  tokenRequests.length = 0;
  let j = await finished((await job({ image: `${bearer}/public/app:1`, insecureRegistry: true })).jobID);
  assert.equal(j.phase, 'READY', j.reason);
  assert.ok(tokenRequests.some((t) => t.user === '' && t.scope === 'repository:public/app:pull'), JSON.stringify(tokenRequests));
  j = await finished((await job({ image: `${bearer}/private/app:1`, insecureRegistry: true })).jobID);
  assert.equal(j.phase, 'FAILED');
  assert.match(j.reason, /denied|401/);
  j = await finished((await job({ image: `${bearer}/private/app:1`, insecureRegistry: true, registryUser: 'alice',
    registryPassword: 'wrong' })).jobID);
  assert.equal(j.phase, 'FAILED');
  assert.match(j.reason, /credentials refused/);
  j = await finished((await job({ image: `${bearer}/private/app:1`, insecureRegistry: true, registryUser: 'alice',
    registryPassword: 's3cret' })).jobID);
  assert.equal(j.phase, 'READY', j.reason);
  assert.ok(tokenRequests.some((t) => t.user === 'alice' && t.scope === 'repository:private/app:pull'));
});

ctest(c, 'hostile layers are refused with the reason and leave nothing behind', async () => {
  const cases = { dotdot: /leaves the layer/, abs: /absolute path/, symlink: /through a symlink/ };
  for (const [name, re] of Object.entries(cases)) {
    const j = await finished((await job({ image: `${plain}/test/${name}:1`, insecureRegistry: true })).jobID);
    assert.equal(j.phase, 'FAILED', name);
    assert.match(j.reason, re);
    assert.ok(!fs.existsSync(`${escape}-${name}`), `${name} wrote outside its layer`);
  }
  const fat = await finished((await job({ image: `${plain}/test/fat:1`, insecureRegistry: true, maxLayerBytes: 1 << 20 })).jobID);
  assert.equal(fat.phase, 'FAILED');
  assert.match(fat.reason, /expands past 1048576 bytes/);
  assert.deepEqual(layerDirs().filter((d) => d.startsWith('.')), []);
});

ctest(c, 'tpl create-from-archive: a docker save tarball and an OCI layout directory', async () => {
  const tarball = path.join(work, 'app-docker.tar');
  const ocidir = path.join(work, 'app-oci');
  await sh('skopeo', ['copy', '--quiet', `oci:${layout}:app`, `docker-archive:${tarball}:test/app:1`]);
  await sh('skopeo', ['copy', '--quiet', `oci:${layout}:multi`, `oci:${ocidir}:multi`]);
  for (const [src, alias] of [[tarball, 'from-docker'], [ocidir, 'from-oci']]) {
    const r = await cli(['tpl', 'create-from-archive', src, '--writable-layer-size', '16M', '--alias', alias]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^READY/m);
    const t = (await api(c, 'GET', `/templates/${alias}`)).json;
    const top = t.layers[0].slice(7);
    const file = alias === 'from-oci' ? 'arch' : 'srv/index.html';
    assert.ok(fs.existsSync(path.join(c.stateDir, 'layers', 'sha256', top, 'rootfs', file)), `${alias}: ${file}`);
  }
  // Over the TCP API an archive path is refused: cubed would read it as root.
  const r = await api(c, 'POST', '/templates/jobs', { body: { archive: tarball } });
  assert.equal(r.status, 403, r.text);
  const bad = await cli(['tpl', 'create-from-archive', layout, '--writable-layer-size', '16M']);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /FAILED: .*holds \d+ images/);
  for (const alias of ['from-docker', 'from-oci']) assert.equal((await cli(['tpl', 'delete', alias])).code, 0);
});

ctest(c, 'kill -9 of cubed during a pull: the job resumes after restart with a Range request', { timeout: 120_000 }, async () => {
  const { jobID } = await job({ image: `127.0.0.1:${throttle.port}/test/big:1`, insecureRegistry: true, alias: 'big' });
  const partial = await waitFor(async () => {
    const r = await api(c, 'GET', `/templates/jobs/${jobID}`);
    return r.json?.layers?.some((l) => !l.cached && l.done > (1 << 20) && l.done < l.size);
  }, 30_000, 100);
  assert.ok(partial, 'no partial progress seen');
  await c.kill9();
  rangeRequests.length = 0;
  await c.restart();
  const j = await finished(jobID, 60_000);
  assert.equal(j.phase, 'READY', j.reason);
  assert.ok(rangeRequests.some((r) => /^bytes=[1-9]\d*-$/.test(r.range)), JSON.stringify(rangeRequests));
  assert.ok(fs.existsSync(path.join(c.stateDir, 'layers', 'sha256', j.layers[j.layers.length - 1].digest.slice(7), 'rootfs', 'big')));
});

ctest(c, 'the unmodified SDK Template builder: RUN and COPY on base, a cached rebuild, Sandbox.create', { timeout: 150_000 }, async () => {
  const { Template, Sandbox } = await loadSdk('e2b-2.51');
  const ctx = path.join(work, 'build-ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'hello.txt'), 'hello from COPY\n');
  const make = () => Template({ fileContextPath: ctx }).fromTemplate('base')
    .copy('hello.txt', '/opt/hello.txt')
    .runCmd('echo built by RUN > /opt/built.txt && rm -f /etc/motd')
    .setEnvs({ BUILT: 'yes' });
  const opts = { apiKey: c.apiKey, apiUrl: c.apiUrl, requestTimeoutMs: 60_000 };
  const logs1 = [];
  await Template.build(make(), 'built-app', { ...opts, onBuildLogs: (l) => logs1.push(l.message) });
  assert.ok(logs1.some((m) => /^RUN echo built/.test(m)), logs1.join('\n'));
  const logs2 = [];
  await Template.build(make(), 'built-app', { ...opts, onBuildLogs: (l) => logs2.push(l.message) });
  assert.ok(logs2.some((m) => /^CACHED RUN/.test(m)) && logs2.some((m) => /^CACHED COPY/.test(m)), logs2.join('\n'));
  assert.ok(await Template.exists('built-app', opts));
  const sbx = await Sandbox.create('built-app', c.sdkOpts);
  try {
    const r = await sbx.commands.run('cat /opt/hello.txt /opt/built.txt; echo $BUILT; test -e /etc/motd || echo motd-gone');
    assert.equal(r.stdout, 'hello from COPY\nbuilt by RUN\nyes\nmotd-gone\n');
  } finally {
    await sbx.kill();
  }
  // A failing step fails the build with the step's status.
  const bad = Template({ fileContextPath: ctx }).fromTemplate('base').runCmd('echo about to fail; exit 7');
  await assert.rejects(Template.build(bad, 'built-bad', opts), /exit status 7/);
  assert.equal((await cli(['tpl', 'delete', 'built-app'])).code, 0);

  // fromImage: the image's layers and config from the (loopback) registry, then a RUN as root.
  const fromImg = Template({ fileContextPath: ctx }).fromImage(`${plain}/test/app:1`)
    .runCmd('echo from-image > /srv/built.txt', { user: 'root' });
  await Template.build(fromImg, 'built-from-image', opts);
  const sbx2 = await Sandbox.create('built-from-image', c.sdkOpts);
  try {
    const r = await sbx2.commands.run('cat /srv/index.html /srv/built.txt; echo $FOO', { user: 'root' });
    assert.equal(r.stdout, 'hello from layer 3\nfrom-image\nbar\n');
  } finally {
    await sbx2.kill();
  }
  assert.equal((await cli(['tpl', 'delete', 'built-from-image'])).code, 0);
});

ctest(c, 'delete removes templates and garbage-collects their layers', async () => {
  const app = (await api(c, 'GET', '/templates/app')).json;
  // Every template with the app's top layer (app, app2, the basic-auth, TLS and Bearer copies), and big.
  const users = (await api(c, 'GET', '/templates')).json
    .filter((t) => t.layers[0] === app.layers[0] || t.aliases.includes('big')).map((t) => t.templateID);
  assert.equal(users.length, 7, JSON.stringify(users));
  // In use: refused without --force; --force kills the sandbox first.
  const sb = await api(c, 'POST', '/sandboxes', { body: { templateID: 'big', timeout: 60 } });
  assert.equal(sb.status, 201, sb.text);
  const refused = await cli(['tpl', 'delete', 'big']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /409: template '\w+' is used by 1 sandbox/);
  const forced = await cli(['tpl', 'delete', 'big', '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal((await api(c, 'GET', `/sandboxes/${sb.json.sandboxID}`)).status, 404);
  for (const ref of users.filter((id) => id !== sb.json.templateID)) {
    const r = await cli(['tpl', 'delete', ref]);
    assert.equal(r.code, 0, r.stderr);
  }
  assert.equal((await api(c, 'GET', '/templates/app')).status, 404);
  // The busybox and base layers are still used by the multi-platform template; the app's top layer is gone.
  const dirs = layerDirs();
  assert.ok(!dirs.includes(app.layers[0].slice(7)), 'app layer kept');
  assert.ok(dirs.includes(app.layers[app.layers.length - 1].slice(7)), 'shared base layer removed');
});
