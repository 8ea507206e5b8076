// The main benchmark, measured in one run against a private cubed (see bench/run.sh, the entry point):
//   API create latency p50/p95/p99 at concurrency 1, 10, 50 with pool hit and pool off; SDK create ->
//   first commands.run('true') (pool hit and cold); create+kill throughput; density (N idle sandboxes,
//   memory per sandbox from MemAvailable and summed PSS, every one answers a command); cold create vs
//   bubblewrap on the same root filesystem; an exec audit of the cold create path (strace).
// Usage: node bench/run.mjs [--out bench/results.json] [--data bench/out] [--density 1000]
// Env: BENCH_N (creates per latency scenario, 200), BENCH_N_SDK (40), BENCH_TPUT_S (8), BENCH_N_BWRAP (40).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { Cubed, api, loadSdk, run, bin, templatesDir, sleep, waitFor } from '../tests/e2e/harness.mjs';

const arg = (name, dflt) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : dflt);
const outPath = arg('--out', 'bench/results.json');
const dataDir = arg('--data', 'bench/out');
const DENSITY = Number(arg('--density', process.env.BENCH_DENSITY || 1000));
const N = Number(process.env.BENCH_N || 200);
const N_SDK = Number(process.env.BENCH_N_SDK || 40);
const TPUT_S = Number(process.env.BENCH_TPUT_S || 8);
const N_BWRAP = Number(process.env.BENCH_N_BWRAP || 40);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r2 = (x) => Math.round(x * 100) / 100;
const summary = (xs) => ({ n: xs.length, p50: r2(pct(xs, 50)), p95: r2(pct(xs, 95)), p99: r2(pct(xs, 99)),
  min: r2(Math.min(...xs)), max: r2(Math.max(...xs)), mean: r2(xs.reduce((a, b) => a + b, 0) / xs.length) });
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
function saveDat(name, xs) {
  fs.writeFileSync(path.join(dataDir, `${name}.dat`), [...xs].sort((a, b) => a - b).map((x) => x.toFixed(3)).join('\n') + '\n');
}
function meminfo() {
  const m = {};
  for (const l of fs.readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const x = /^(\w+):\s+(\d+)/.exec(l);
    if (x) m[x[1]] = Number(x[2]);
  }
  return m;
}
const loadavg = () => os.loadavg().map(r2);

const c = new Cubed({ extraArgs: ['--max-sandboxes', String(DENSITY + 300), '--log-level', 'warn'] });
const cli = (...a) => run(bin.cli, ['--socket', c.socket, ...a], { timeoutMs: 20_000 });

async function metric(name) {
  const text = await (await fetch(`${c.apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{template="base"} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function setPool(min, max) {
  const r = await cli('--json', 'pool', 'set', 'base', '--min', String(min), '--max', String(max));
  if (r.code !== 0) throw new Error(`pool set: ${r.stderr}`);
}
async function poolFilled(n) {
  const ok = await waitFor(async () => {
    const g = JSON.parse((await cli('--json', 'pool', 'get', 'base')).stdout);
    return g.idle >= n && g.warming === 0;
  }, 120_000, 50);
  if (!ok) throw new Error(`pool did not reach ${n}`);
  await sleep(200); // let the last freeze settle
}

async function create() {
  const t0 = performance.now();
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 600 } });
  const ms = performance.now() - t0;
  if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
  return { ms, id: r.json.sandboxID };
}
async function kill(id) {
  const r = await api(c, 'DELETE', `/sandboxes/${id}`);
  if (r.status !== 204) throw new Error(`kill ${id}: ${r.status}`);
}
async function killAll(ids, conc = 8) {
  for (let i = 0; i < ids.length; i += conc) await Promise.all(ids.slice(i, i + conc).map(kill));
}
// n creates with `conc` in flight (closed loop); returns latencies and ids.
async function closedLoop(n, conc, fn = create) {
  const lat = [], ids = [];
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      next++;
      const { ms, id } = await fn();
      lat.push(ms);
      ids.push(id);
    }
  }));
  return { lat, ids };
}

async function latencyScenarios(results) {
  results.createLatency = {};
  for (const conc of [1, 10, 50]) {
    // pool off: boots on the request path
    await setPool(0, 0);
    const cold = [];
    while (cold.length < N) {
      const { lat, ids } = await closedLoop(Math.min(N - cold.length, Math.max(conc, 50)), conc);
      cold.push(...lat);
      await killAll(ids);
    }
    // pool hit: rounds of P creates against a pool filled with P (P >= conc), refilled between rounds
    const P = Math.max(conc, 50);
    const hit = [];
    const hits0 = await metric('cube_pool_hits_total');
    while (hit.length < N) {
      await setPool(P, P);
      await poolFilled(P);
      const { lat, ids } = await closedLoop(Math.min(P, N - hit.length), conc);
      hit.push(...lat);
      await setPool(0, 0); // no refill competing with the kills
      await killAll(ids);
    }
    const hits = (await metric('cube_pool_hits_total')) - hits0;
    results.createLatency[`c${conc}`] = { poolOff: summary(cold), poolHit: { ...summary(hit), hits } };
    saveDat(`cold-c${conc}`, cold);
    saveDat(`pool-c${conc}`, hit);
    log(`create c=${conc}: pool off p50 ${r2(pct(cold, 50))} ms, pool hit p50 ${r2(pct(hit, 50))} ms (${hits}/${hit.length} hits)`);
  }
}

// The same pool-hit c=1 scenario against a second cubed whose state dir (SQLite) is on tmpfs: the
// difference is what the store's fsyncs (WAL, synchronous=FULL) cost on this disk.
async function fsyncBound(results) {
  const t = new Cubed({ extraArgs: ['--log-level', 'warn'] });
  const tmp = process.env.TMPDIR;
  process.env.TMPDIR = '/dev/shm'; // the harness makes the state dir in os.tmpdir()
  try { await t.start(); } finally { if (tmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = tmp; }
  if (!t.stateDir.startsWith('/dev/shm/')) throw new Error(`state dir ${t.stateDir} is not on tmpfs`);
  try {
    const tcli = (...a) => run(bin.cli, ['--socket', t.socket, ...a], { timeoutMs: 20_000 });
    const lat = [];
    while (lat.length < N) {
      await tcli('pool', 'set', 'base', '--min', '50', '--max', '50');
      await waitFor(async () => { const g = JSON.parse((await tcli('--json', 'pool', 'get', 'base')).stdout); return g.idle >= 50 && g.warming === 0; }, 120_000, 50);
      await sleep(200);
      const ids = [];
      for (let i = 0; i < Math.min(50, N - lat.length); i++) {
        const t0 = performance.now();
        const r = await api(t, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 600 } });
        lat.push(performance.now() - t0);
        if (r.status !== 201) throw new Error(`create: ${r.status}`);
        ids.push(r.json.sandboxID);
      }
      await tcli('pool', 'set', 'base', '--max', '0');
      for (const id of ids) await api(t, 'DELETE', `/sandboxes/${id}`);
    }
    results.poolHitC1StateOnTmpfs = summary(lat);
    saveDat('pool-c1-tmpfs', lat);
    log(`pool hit c=1, state on tmpfs: p50 ${r2(pct(lat, 50))} ms`);
  } finally {
    await t.stop();
  }
}

async function sdkScenarios(results) {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const one = async () => {
    const t0 = performance.now();
    const sbx = await Sandbox.create({ ...c.sdkOpts });
    await sbx.commands.run('true');
    const ms = performance.now() - t0;
    return { ms, id: sbx.sandboxId };
  };
  // a few warm-up rounds (SDK module, keep-alive connections)
  for (let i = 0; i < 3; i++) { const { id } = await one(); await kill(id); }
  const pooled = [];
  while (pooled.length < N_SDK) {
    await setPool(20, 20);
    await poolFilled(20);
    const { lat, ids } = await closedLoop(Math.min(20, N_SDK - pooled.length), 1, one);
    pooled.push(...lat);
    await setPool(0, 0);
    await killAll(ids);
  }
  const cold = [];
  for (let i = 0; i < N_SDK; i++) { const { ms, id } = await one(); cold.push(ms); await kill(id); }
  results.sdkCreateToFirstRun = { poolHit: summary(pooled), poolOff: summary(cold) };
  saveDat('sdk-pool', pooled);
  saveDat('sdk-cold', cold);
  // the run('true') round trip alone, on a warm sandbox
  const sbx = await Sandbox.create({ ...c.sdkOpts });
  for (let i = 0; i < 5; i++) await sbx.commands.run('true');
  const rt = [];
  for (let i = 0; i < 100; i++) { const t0 = performance.now(); await sbx.commands.run('true'); rt.push(performance.now() - t0); }
  const inner = await sbx.commands.run('s=$(date +%s%N); for i in $(seq 20); do bash -l -c true; done; e=$(date +%s%N); echo $(( (e - s) / 20000 ))');
  results.runTrueRoundTrip = { ...summary(rt), bashLoginTrueInsideUs: Number(inner.stdout.trim()) };
  await kill(sbx.sandboxId);
  log(`SDK create->run: pool p50 ${results.sdkCreateToFirstRun.poolHit.p50} ms, cold p50 ${results.sdkCreateToFirstRun.poolOff.p50} ms`);
}

async function throughput(results) {
  await setPool(0, 0);
  const out = {};
  for (const conc of [8, 32]) {
    let done = 0;
    const deadline = performance.now() + TPUT_S * 1000;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: conc }, async () => {
      while (performance.now() < deadline) {
        const { id } = await create();
        await kill(id);
        done++;
      }
    }));
    out[`c${conc}`] = { pairs: done, seconds: r2((performance.now() - t0) / 1000), perSecond: r2(done / ((performance.now() - t0) / 1000)) };
    await sleep(1000);
  }
  results.createKillThroughput = out;
  log(`create+kill/s: ${JSON.stringify(out)}`);
}

function bwrapArgs(rootfs, cmd) {
  return ['--unshare-all', '--die-with-parent', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev',
    '--tmpfs', '/tmp', '--hostname', 'bench', '--', ...cmd];
}
function timeSpawn(file, args) {
  const t0 = performance.now();
  const r = spawnSync(file, args, { stdio: 'ignore' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${file} exited ${r.status}`);
  return ms;
}

async function sideBySide(results) {
  await setPool(0, 0);
  const rootfs = path.join(templatesDir, 'base', 'rootfs');
  const { Sandbox } = await loadSdk('e2b-2.51');
  const bwTrue = [], bwBash = [], ours = [], oursRun = [];
  for (let i = 0; i < 5; i++) { timeSpawn('bwrap', bwrapArgs(rootfs, ['/bin/true'])); }
  for (let i = 0; i < N_BWRAP; i++) {
    bwTrue.push(timeSpawn('bwrap', bwrapArgs(rootfs, ['/bin/true'])));
    bwBash.push(timeSpawn('bwrap', bwrapArgs(rootfs, ['/bin/bash', '-l', '-c', 'true'])));
    const { ms, id } = await create();
    ours.push(ms);
    await kill(id);
    const t0 = performance.now();
    const sbx = await Sandbox.create({ ...c.sdkOpts });
    await sbx.commands.run('true'); // the SDK runs /bin/bash -l -c true
    oursRun.push(performance.now() - t0);
    await kill(sbx.sandboxId);
  }
  const s = { bwrapTrue: summary(bwTrue), bwrapBashLoginTrue: summary(bwBash), coldCreate: summary(ours),
    coldCreateThenRunTrue: summary(oursRun) };
  s.ratios = {
    coldCreateVsBwrapTrue: r2(s.coldCreate.p50 / s.bwrapTrue.p50),
    coldCreateThenRunVsBwrapBashLoginTrue: r2(s.coldCreateThenRunTrue.p50 / s.bwrapBashLoginTrue.p50),
  };
  s.bwrapVersion = spawnSync('bwrap', ['--version'], { encoding: 'utf8' }).stdout.trim();
  s.gvisor = 'not measured: runsc is not packaged in Debian 12 and only Debian and npm are reachable here';
  results.sideBySide = s;
  log(`side by side: ${JSON.stringify(s.ratios)}`);
}

// Which programs does cubed execute while creating sandboxes? (the only exec should be envd itself)
async function execAudit(results) {
  await setPool(0, 0);
  const trace = path.join(dataDir, 'exec-audit.strace');
  const st = spawn('strace', ['-f', '-qq', '-e', 'trace=execve,execveat', '-o', trace, '-p', String(c.proc.pid)], { stdio: 'ignore' });
  await sleep(1000);
  const ids = [];
  for (let i = 0; i < 20; i++) ids.push((await create()).id);
  await killAll(ids);
  await sleep(300);
  st.kill('SIGINT');
  await new Promise((r) => st.once('exit', r));
  const lines = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').split('\n').filter((l) => /exec/.test(l) && !/resumed/.test(l)) : [];
  const progs = {};
  for (const l of lines) {
    const m = /execve(?:at)?\((?:\d+, )?"([^"]*)"/.exec(l);
    if (m) progs[m[1]] = (progs[m[1]] || 0) + 1;
  }
  results.execAudit = { creates: 20, execs: progs };
  log(`exec audit: ${JSON.stringify(progs)}`);
}

async function density(results) {
  await setPool(0, 0);
  await sleep(2000);
  const before = meminfo();
  const ids = [];
  const t0 = performance.now();
  let failed = 0, started = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (started < DENSITY) {
      started++;
      try { ids.push((await create()).id); } catch (e) { failed++; if (failed < 3) log(`density create failed: ${e.message}`); }
    }
  }));
  const createS = (performance.now() - t0) / 1000;
  await sleep(5000);
  const after = meminfo();
  // summed PSS of every process of every sandbox, from the sandboxes' cgroups
  const inst = fs.readFileSync(path.join(c.stateDir, 'instance-id'), 'utf8').trim();
  const cgBase = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? `/sys/fs/cgroup/cubesandbox/${inst}` : `/sys/fs/cgroup/memory/cubesandbox/${inst}`;
  let pssKb = 0, procs = 0, cgMem = 0;
  for (const id of ids) {
    const dir = path.join(cgBase, id);
    let pids = [];
    try { pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean); } catch { /* gone */ }
    for (const pid of pids) {
      try {
        const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
        if (m) { pssKb += Number(m[1]); procs++; }
      } catch { /* exited */ }
    }
    try { cgMem += Number(fs.readFileSync(path.join(dir, fs.existsSync(path.join(dir, 'memory.current')) ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8')); } catch { /* none */ }
  }
  // every sandbox answers a command
  const { Sandbox } = await loadSdk('e2b-2.51');
  let answered = 0;
  let next = 0;
  const t1 = performance.now();
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < ids.length) {
      const id = ids[next++];
      try {
        const sbx = await Sandbox.connect(id, { ...c.sdkOpts });
        const r = await sbx.commands.run('true');
        if (r.exitCode === 0) answered++;
      } catch (e) { if (answered === 0) log(`density command failed: ${e.message}`); }
    }
  }));
  const answerS = (performance.now() - t1) / 1000;
  const n = ids.length;
  const kb = (k) => after[k] - before[k];
  results.density = {
    requested: DENSITY, created: n, failed, createSeconds: r2(createS), answered, answerSeconds: r2(answerS),
    memAvailableDropMiB: r2((before.MemAvailable - after.MemAvailable) / 1024),
    perSandboxMemAvailableMiB: r2((before.MemAvailable - after.MemAvailable) / 1024 / n),
    summedPssMiB: r2(pssKb / 1024), perSandboxPssMiB: r2(pssKb / 1024 / n), processes: procs,
    perSandboxCgroupMemMiB: r2(cgMem / 1048576 / n),
    deltasKiBPerSandbox: Object.fromEntries(['Shmem', 'Slab', 'SUnreclaim', 'KernelStack', 'PageTables', 'AnonPages', 'Cached']
      .map((k) => [k, r2(kb(k) / n)])),
  };
  log(`density: ${JSON.stringify(results.density)}`);
  await killAll(ids, 16);
}

async function main() {
  fs.mkdirSync(dataDir, { recursive: true });
  const cpu = os.cpus();
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpu.length, model: cpu[0]?.model, memGiB: r2(os.totalmem() / 2 ** 30), kernel: os.release(),
      cgroup: fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1/hybrid' },
    loadavgStart: loadavg(),
  };
  await c.start();
  try {
    for (let i = 0; i < 5; i++) { const { id } = await create(); await kill(id); } // page cache, SDK, keep-alive
    await latencyScenarios(results);
    await fsyncBound(results);
    await sdkScenarios(results);
    await throughput(results);
    await sideBySide(results);
    await execAudit(results);
    await density(results);
    results.serverHistograms = (await (await fetch(`${c.apiUrl}/metrics`)).text()).split('\n')
      .filter((l) => /^cube_(sandbox_create_seconds|pool_claim_seconds)_(sum|count)/.test(l));
  } finally {
    results.loadavgEnd = loadavg();
    await c.stop();
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results, null, 2));
}

main().catch((e) => { console.error(e); process.exit(1); });
