// Small helpers shared by the lifecycle benchmarks (pause.mjs, lifecycle.mjs): percentiles, the machine
// and its load, creating a sandbox through the API and running a command in it through envd directly
// (no SDK in the timed path).
import fs from 'node:fs';
import os from 'node:os';
import { api, dataRequest, run } from '../tests/e2e/harness.mjs';

export function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
export const r2 = (x) => Math.round(x * 100) / 100;
export const summary = (xs) => ({ n: xs.length, p50: r2(pct(xs, 50)), p95: r2(pct(xs, 95)), p99: r2(pct(xs, 99)),
  max: r2(Math.max(...xs)) });

// `--name value` from the command line, or the default.
export function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

// What the numbers depend on: CPU, memory, kernel, cgroup version, the filesystem of `dir` (the state
// dir: where pauses to disk and snapshots are written), and the load average when the run starts.
export async function machine(dir = os.tmpdir()) {
  const fsInfo = await run('findmnt', ['-no', 'FSTYPE,SOURCE,OPTIONS', '-T', dir]);
  return { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: r2(os.totalmem() / 2 ** 30),
    kernel: os.release(), cgroup: fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1 (freezer controller)',
    stateDirFs: fsInfo.stdout.trim().replace(/\s+/g, ' '), loadavg: os.loadavg().map(r2) };
}

export async function createSandbox(c, body = {}) {
  const r = await api(c, 'POST', '/v2/sandboxes', { body: { templateID: 'base', timeout: 600, ...body } });
  if (r.status !== 201) throw new Error(`create: ${r.status} ${r.text}`);
  return r.json;
}

// Run `/bin/sh -c cmd` as root through envd's Connect API (process.Process/Start, a server stream) and
// return {stdout, exitCode}; `sbx` is the API's Sandbox JSON (sandboxID, envdAccessToken).
export async function sh(c, sbx, cmd, { timeoutMs = 120_000 } = {}) {
  const payload = JSON.stringify({ process: { cmd: '/bin/sh', args: ['-c', cmd] } });
  const frame = Buffer.alloc(5 + Buffer.byteLength(payload));
  frame.writeUInt32BE(Buffer.byteLength(payload), 1);
  frame.write(payload, 5);
  const r = await dataRequest(c, { sandboxId: sbx.sandboxID, method: 'POST', path: '/process.Process/Start', body: frame,
    timeoutMs, headers: { 'Content-Type': 'application/connect+json', 'Connect-Protocol-Version': '1',
      'X-Access-Token': sbx.envdAccessToken, Authorization: 'Basic cm9vdDo=' } });
  if (r.status !== 200) throw new Error(`run ${cmd}: ${r.status} ${r.text}`);
  let stdout = '', exitCode = null;
  for (let o = 0; o + 5 <= r.body.length;) {
    const flags = r.body[o], len = r.body.readUInt32BE(o + 1);
    const msg = JSON.parse(r.body.subarray(o + 5, o + 5 + len).toString('utf8') || '{}');
    o += 5 + len;
    if (flags & 2) { // end of stream: {} or {"error": ...}
      if (msg.error) throw new Error(`run ${cmd}: ${JSON.stringify(msg.error)}`);
      continue;
    }
    const ev = msg.event || {};
    if (ev.data?.stdout) stdout += Buffer.from(ev.data.stdout, 'base64').toString('utf8');
    if (ev.end) exitCode = ev.end.exitCode ?? 0;
  }
  if (exitCode !== 0) throw new Error(`run ${cmd}: exit ${exitCode}`);
  return { stdout, exitCode };
}

// A compact summary on stdout: one line per measure, "p50 / p95 (n)" in ms.
export function printRows(title, rows) {
  console.log(`\n${title}`);
  const w = Math.max(...rows.map(([label]) => label.length));
  for (const [label, s, extra = ''] of rows) {
    const v = typeof s === 'object' && s ? `${s.p50} / ${s.p95} ms (n=${s.n})` : String(s);
    console.log(`  ${label.padEnd(w)}  ${v}${extra ? `  ${extra}` : ''}`);
  }
}

// Numbers cubed wrote into a sandbox's log: the first group of `re` in each matching line of the newest
// 1000 lines, oldest first.
export async function logTimes(c, id, re) {
  const r = await api(c, 'GET', `/v2/sandboxes/${id}/logs?limit=1000&direction=backward`);
  if (r.status !== 200) throw new Error(`logs of ${id}: ${r.status} ${r.text}`);
  return r.json.logs.reverse().map((e) => re.exec(e.message)).filter(Boolean).map((m) => Number(m[1]));
}
