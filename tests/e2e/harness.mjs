// Shared harness for the end-to-end suite: starts a private cubed per test file (own state dir, own
// ports), mints an API key with cubemastercli, and offers helpers to drive the unmodified e2b SDK (both
// pinned versions) and to talk raw HTTP to the API and the data-plane proxy. Everything is time-bounded so
// a hung server fails a test instead of hanging CI.

import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, before, after } from 'node:test';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoDir = path.resolve(here, '..', '..');
export const buildDir = process.env.CUBE_BUILD_DIR || path.join(repoDir, 'build');
export const templatesDir = process.env.CUBE_TEMPLATES_DIR || '/var/lib/cubesandbox-test/templates';
export const bin = {
  cubed: path.join(buildDir, 'cubed'),
  envd: process.env.CUBE_ENVD || path.join(buildDir, 'cube-envd'),
  cli: path.join(buildDir, 'cubemastercli'),
};
export const DOMAIN = 'cube.test';
export const REQUEST_TIMEOUT_MS = 30_000;

// SDK versions under test: npm aliases declared in package.json.
export const SDK_VERSIONS = [
  { label: 'e2b@2.51.0', pkg: 'e2b-2.51' },
  { label: 'e2b@2.45.0', pkg: 'e2b-2.45' },
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

// Reject `promise` if it does not settle within `ms`; the message names what hung.
export function withTimeout(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

// Poll `fn` until it returns a truthy value or `ms` elapse; returns the last value (falsy on timeout).
export async function waitFor(fn, ms, intervalMs = 100) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    try { v = await fn(); } catch (e) { v = undefined; }
    if (v || Date.now() >= deadline) return v;
    await sleep(intervalMs);
  }
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Run a command with a hard timeout; never throws, returns {code, signal, stdout, stderr}.
export function run(file, args, { timeoutMs = 20_000, input, env } = {}) {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20,
      env: env ? { ...process.env, ...env } : process.env }, (err, stdout, stderr) => {
      resolve({
        code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
        signal: err?.signal ?? null,
        error: err && typeof err.code !== 'number' ? String(err.message) : null,
        stdout: String(stdout),
        stderr: String(stderr),
      });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

export function binariesPresent() {
  return Object.values(bin).every((p) => fs.existsSync(p));
}

function mountsUnder(dir) {
  try {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
      .filter((l) => l.split(' ')[4]?.startsWith(dir + '/') || l.split(' ')[4] === dir);
  } catch { return []; }
}

async function httpStatus(url, ms = 2000) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
    await r.arrayBuffer();
    return r.status;
  } catch { return 0; }
}

// Safety net after a test file: kill every process left in this instance's cgroups and remove the empty
// cgroup dirs, so one broken run does not poison the machine. Returns how many processes it killed.
async function reapInstance(stateDir) {
  let instance;
  try { instance = fs.readFileSync(path.join(stateDir, 'instance-id'), 'utf8').trim(); } catch { return 0; }
  if (!instance) return 0;
  const base = '/sys/fs/cgroup';
  const roots = [path.join(base, 'cubesandbox', instance),
    ...fs.readdirSync(base).map((d) => path.join(base, d, 'cubesandbox', instance))].filter((p) => fs.existsSync(p));
  let killed = 0;
  const dirs = [];
  for (const root of roots) {
    const stack = [root];
    while (stack.length) {
      const d = stack.pop();
      dirs.push(d);
      try {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) stack.push(path.join(d, e.name));
      } catch { /* vanished */ }
    }
  }
  for (let round = 0; round < 5; round++) {
    let found = 0;
    for (const d of dirs) {
      let pids = [];
      try { pids = fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number); } catch { /* none */ }
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); found++; } catch { /* gone */ } }
      // A paused (frozen) task acts on SIGKILL only once thawed (v1 freezer).
      for (const [f, v] of [['freezer.state', 'THAWED'], ['cgroup.freeze', '0']]) {
        try { fs.writeFileSync(path.join(d, f), v); } catch { /* not this hierarchy */ }
      }
    }
    killed += found;
    if (!found) break;
    await sleep(100);
  }
  for (const d of dirs.sort((x, y) => y.length - x.length)) { try { fs.rmdirSync(d); } catch { /* busy or gone */ } }
  return killed;
}

const liveCubeds = new Set();
process.once('exit', () => { for (const p of liveCubeds) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });

// A running cubed instance owned by one test file.
export class Cubed {
  // prepare(stateDir): runs once the state dir exists, before cubed first starts (e.g. to mount a small
  // filesystem into it).
  constructor({ extraArgs = [], prepare = null } = {}) {
    this.extraArgs = extraArgs;
    this.prepare = prepare;
    this.proc = null;
    this.exited = null;
  }

  get apiUrl() { return `http://127.0.0.1:${this.apiPort}`; }
  get sandboxUrl() { return `http://127.0.0.1:${this.proxyPort}`; }
  get socket() { return path.join(this.stateDir, 'cubed.sock'); }
  get sdkOpts() {
    // Passed as constructor options (never via process.env) so both SDK versions can share one process.
    // `domain` only affects getHost(); all SDK data-plane traffic goes to sandboxUrl (single-URL mode).
    return { apiKey: this.apiKey, apiUrl: this.apiUrl, sandboxUrl: this.sandboxUrl,
      requestTimeoutMs: REQUEST_TIMEOUT_MS, domain: DOMAIN };
  }

  async start() {
    if (!binariesPresent()) {
      throw new Error(`binaries missing in ${buildDir} (need cubed, cube-envd, cubemastercli); build first`);
    }
    this.stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cube-e2e-'));
    this.logPath = path.join(os.tmpdir(), `${path.basename(this.stateDir)}.log`);
    if (this.prepare) await this.prepare(this.stateDir);
    this.apiPort = await freePort();
    this.proxyPort = await freePort();
    await this.spawn();
    const r = await run(bin.cli, ['--socket', this.socket, 'apikey', 'create', '--name', 'test', '--json']);
    if (r.code !== 0) throw new Error(`cubemastercli apikey create failed (${r.code}): ${r.stderr}${r.stdout}\n${this.logTail()}`);
    let parsed;
    try { parsed = JSON.parse(r.stdout); } catch { throw new Error(`apikey create --json printed non-JSON: ${r.stdout}`); }
    if (!/^e2b_[0-9a-f]+$/.test(parsed.key ?? '')) throw new Error(`API key has the wrong form: ${JSON.stringify(parsed)}`);
    this.apiKey = parsed.key;
    this.apiKeyId = parsed.id;
    return this;
  }

  async spawn() {
    const args = ['--state-dir', this.stateDir, '--templates-dir', templatesDir,
      '--api', `127.0.0.1:${this.apiPort}`, '--proxy', `127.0.0.1:${this.proxyPort}`,
      '--envd', bin.envd, '--domain', DOMAIN, ...this.extraArgs];
    const logFd = fs.openSync(this.logPath, 'a');
    fs.writeSync(logFd, `\n=== ${new Date().toISOString()} cubed ${args.join(' ')}\n`);
    const proc = spawn(bin.cubed, args, { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    // If a hook fails, node's test runner may skip the after() that stops us: never let a running cubed
    // keep the test process (and CI) alive, and never leave it behind when the process ends.
    proc.unref();
    liveCubeds.add(proc);
    proc.once('exit', () => liveCubeds.delete(proc));
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })));
    let dead = null;
    this.exited.then((x) => { dead = x; });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (dead) throw new Error(`cubed exited during start-up (${JSON.stringify(dead)})\n${this.logTail()}`);
      if (await httpStatus(`${this.apiUrl}/health`) === 204) return;
      await sleep(50);
    }
    throw new Error(`cubed did not answer GET /health with 204 within 30 s\n${this.logTail()}`);
  }

  logTail(lines = 60) {
    try {
      const all = fs.readFileSync(this.logPath, 'utf8').split('\n');
      return `--- cubed log (${this.logPath}), last ${lines} lines ---\n${all.slice(-lines).join('\n')}`;
    } catch { return '(no cubed log)'; }
  }

  async signalAndWait(sig, ms) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return true;
    this.proc.kill(sig);
    try { await withTimeout(this.exited, ms, `cubed exit after ${sig}`); return true; } catch { return false; }
  }

  async kill9() { await this.signalAndWait('SIGKILL', 10_000); }

  // Restart on the same state dir and ports (after stop() or kill9()).
  async restart() {
    await this.signalAndWait('SIGTERM', 10_000) || await this.kill9();
    await this.spawn();
  }

  // Kill every sandbox the API still lists (best effort, bounded).
  async killAllSandboxes() {
    const ids = await this.listIds().catch(() => []);
    await Promise.all(ids.map((id) => api(this, 'DELETE', `/sandboxes/${id}`).catch(() => null)));
    return ids;
  }

  async listIds() {
    const r = await api(this, 'GET', '/v2/sandboxes?limit=100');
    if (r.status !== 200 || !Array.isArray(r.json)) return [];
    return r.json.map((s) => s.sandboxID);
  }

  async stop() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) await this.killAllSandboxes();
    if (!(await this.signalAndWait('SIGTERM', 10_000))) await this.kill9();
    this.proc = null;
    const reaped = await reapInstance(this.stateDir);
    if (reaped) process.stderr.write(`[harness] killed ${reaped} leftover sandbox process(es) of ${this.stateDir}\n`);
    // cubed removes its nftables table when it stops with no sandbox left; after a crash it cannot.
    try {
      const inst = fs.readFileSync(path.join(this.stateDir, 'instance-id'), 'utf8').trim();
      if (/^[0-9a-f]{12}$/.test(inst)) await run('nft', ['delete', 'table', 'ip', `cube_${inst}`]).catch(() => {});
    } catch { /* never started */ }
    // Writable layers (host tmpfs under <state>/sandboxes/<id>/layer) of sandboxes cubed did not kill.
    for (const l of mountsUnder(path.join(this.stateDir, 'sandboxes'))) {
      const mp = l.split(' ')[4];
      if (/\/sandboxes\/[a-z0-9]+\/layer$/.test(mp)) await run('umount', ['-l', mp]);
    }
    // Never recurse into a dir that still has mounts (it would walk into sandbox trees).
    if (!process.env.CUBE_E2E_KEEP && this.stateDir && mountsUnder(this.stateDir).length === 0) {
      await fsp.rm(this.stateDir, { recursive: true, force: true }).catch(() => {});
    }
  }
}

// Register before/after hooks that give this test file its own cubed. Returns the (lazily started) instance.
// A private templates dir for one test file (snapshots are written there, so files do not share one):
// the shared `base`, plus a template `name` on base's files whose start command writes a fresh
// /tmp/boot-id at every boot, so a test can tell whether a sandbox booted again. Removed afterwards.
export function bootMarkerTemplates(prefix, name, { memoryMB = 256, diskSizeMB = 256 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cube-e2e-${prefix}-tpl-`));
  fs.symlinkSync(path.join(templatesDir, 'base'), path.join(dir, 'base'));
  fs.mkdirSync(path.join(dir, name));
  fs.writeFileSync(path.join(dir, name, 'template.json'), JSON.stringify({
    name, cpuCount: 1, memoryMB, diskSizeMB, envs: {}, layers: ['template/base'],
    startCmd: 'cat /proc/sys/kernel/random/uuid > /tmp/boot-id; exec sleep infinity',
  }));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function useCubed(opts) {
  const c = new Cubed(opts);
  before(async () => { await c.start(); }, { timeout: 60_000 });
  after(async () => { await c.stop(); }, { timeout: 60_000 });
  return c;
}

// Attach the cubed log tail to a failing test so the cause is visible in CI output.
function withLog(c, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      if (c && e && typeof e === 'object' && !e.__cubeLog) {
        try { e.message = `${e.message}\n${c.logTail(40)}`; e.__cubeLog = true; } catch { /* frozen */ }
      }
      throw e;
    }
  };
}

export function ctest(c, name, opts, fn) {
  if (typeof opts === 'function') { fn = opts; opts = {}; }
  test(name, { timeout: 120_000, ...opts }, withLog(c, fn));
}

const sdkCache = new Map();
export async function loadSdk(pkg) {
  if (!sdkCache.has(pkg)) sdkCache.set(pkg, await import(pkg));
  return sdkCache.get(pkg);
}

// Run the same scenario with each pinned SDK version as separate test cases.
// fn receives {sdk, Sandbox, version, create(templateOrOpts?, opts?), t}; sandboxes made through `create`
// are killed after the test, whatever happens.
export function forEachSdk(c, name, opts, fn) {
  if (typeof opts === 'function') { fn = opts; opts = {}; }
  for (const v of SDK_VERSIONS) {
    test(`${name} [${v.label}]`, { timeout: 120_000, ...opts }, withLog(c, async (t) => {
      const sdk = await loadSdk(v.pkg);
      const made = [];
      const create = async (a, b) => {
        let sbx;
        if (typeof a === 'string') sbx = await sdk.Sandbox.create(a, { ...c.sdkOpts, ...(b || {}) });
        else sbx = await sdk.Sandbox.create({ ...c.sdkOpts, ...(a || {}) });
        made.push(sbx.sandboxId);
        return sbx;
      };
      try {
        await fn({ sdk, Sandbox: sdk.Sandbox, version: v.label, create, t });
      } finally {
        await Promise.all(made.map((id) => api(c, 'DELETE', `/sandboxes/${id}`).catch(() => null)));
      }
    }));
  }
}

// Raw control-plane request. `key` null = send no key. Returns {status, headers, text, json}.
export async function api(c, method, p, { body, key = c.apiKey, headers = {}, rawBody, timeoutMs = 30_000 } = {}) {
  const h = { ...headers };
  if (key !== null && key !== undefined) h['X-API-Key'] = key;
  let payload;
  if (rawBody !== undefined) payload = rawBody;
  else if (body !== undefined) { payload = JSON.stringify(body); h['Content-Type'] = 'application/json'; }
  const r = await fetch(`${c.apiUrl}${p}`, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// Raw request to the data-plane proxy over node:http (fetch cannot set Host).
// route: 'host' (Host: <port>-<id>.<domain>), 'headers' (E2b-Sandbox-Id/Port), or 'none'.
export function dataRequest(c, { sandboxId, port = 49983, method = 'GET', path: p = '/', headers = {}, body,
  route = 'host', agent, timeoutMs = 30_000, host } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (host) h.Host = host;
    else if (route === 'host') h.Host = `${port}-${sandboxId}.${DOMAIN}`;
    else h.Host = `127.0.0.1:${c.proxyPort}`;
    if (route === 'headers') { h['E2b-Sandbox-Id'] = sandboxId; h['E2b-Sandbox-Port'] = String(port); }
    if (body !== undefined && h['Content-Length'] === undefined && h['Transfer-Encoding'] === undefined) {
      h['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request({ host: '127.0.0.1', port: c.proxyPort, method, path: p, headers: h,
      agent: agent ?? false, setHost: false });
    const timer = setTimeout(() => req.destroy(new Error(`data-plane ${method} ${p} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
      res.on('end', () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks);
        let json;
        try { json = JSON.parse(buf.toString('utf8')); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: buf, text: buf.toString('utf8'), json,
          socket: req.socket });
      });
    });
    if (body !== undefined) req.end(body); else req.end();
  });
}

// Access token of an SDK sandbox object (not public API; present in both versions as a field).
export function accessToken(sbx) {
  return sbx.envdAccessToken ?? sbx.connectionConfig?.accessToken;
}

// Host-side /proc helpers used by isolation and restart tests.
export function hostPids() {
  return fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
}

export function readProc(pid, file) {
  try { return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8'); } catch { return null; }
}

export function netnsInodes() {
  const set = new Set();
  for (const pid of hostPids()) {
    try { set.add(fs.readlinkSync(`/proc/${pid}/ns/net`)); } catch { /* gone or no access */ }
  }
  return set;
}
