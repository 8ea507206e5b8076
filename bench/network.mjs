// Network benchmarks (issue 4), against a private cubed and the e2e suite's fake internet: TCP throughput
// from a sandbox to a host in another namespace (no eBPF program / default policy / 512-entry policy),
// cost per new TCP connection, and PUT /sandboxes/{id}/network latency.
// Usage: node bench/network.mjs [--out bench/network.json]   (root; build/ and the test template)
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Cubed, api, loadSdk } from '../tests/e2e/harness.mjs';
import { FakeInternet, ADDR, PORTS } from '../tests/e2e/fakenet.mjs';

const outPath = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : 'bench/network.json';
const SECONDS = Number(process.env.BENCH_NET_SECONDS || 4);
const ROUNDS = Number(process.env.BENCH_NET_ROUNDS || 3);
const CONNS = Number(process.env.BENCH_NET_CONNS || 1000);

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r2 = (x) => Math.round(x * 100) / 100;

// Python in the sandbox: stream 1 MiB writes for SECONDS, then report Gbit/s the sink acknowledged;
// then CONNS sequential connection attempts to a closed port of the fake host (SYN out, RST back: the
// round trip of a new connection through veth, eBPF, conntrack and NAT, without any server in the way),
// reporting the mean microseconds per attempt.
const PY = `
import socket, sys, time
host = sys.argv[1]; secs = float(sys.argv[2]); conns = int(sys.argv[3])
buf = b"x" * (1 << 20)
s = socket.create_connection((host, ${PORTS.sink})); t0 = time.time(); sent = 0
while time.time() - t0 < secs:
    s.sendall(buf); sent += len(buf)
s.shutdown(socket.SHUT_WR); got = int(s.recv(64)); el = time.time() - t0
t1 = time.time()
for i in range(conns):
    c = socket.socket()
    try:
        c.connect((host, 1))
    except ConnectionRefusedError:
        pass
    c.close()
per = (time.time() - t1) / conns * 1e6
print("%f %f" % (got * 8 / el / 1e9, per))
`;

async function measure(sbx) {
  const r = await sbx.commands.run(`python3 -c '${PY}' ${ADDR.api} ${SECONDS} ${CONNS}`, { timeoutMs: 120_000 });
  const [gbps, us] = r.stdout.trim().split(' ').map(Number);
  return { gbps, us };
}

async function main() {
  const inet = await new FakeInternet().start();
  const c = new Cubed({ extraArgs: inet.cubedArgs() });
  await c.start();
  const { Sandbox } = await loadSdk('e2b-2.51');
  const cidrs = (base, n) => Array.from({ length: n }, (_, i) => `${base}.${i}.0/24`);
  const heavy = { allowOut: [...cidrs('100.70', 255), `${ADDR.api}/32`], denyOut: ['0.0.0.0/0', ...cidrs('100.80', 255)] };
  const results = { date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, conns: CONNS, cases: {} };
  try {
    const configs = {
      'no eBPF program (veth + NAT only)': { opts: {}, detach: true },
      'default policy': { opts: {} },
      'policy with 512 CIDRs, internet off': { opts: { network: heavy } },
    };
    for (const [name, cfg] of Object.entries(configs)) {
      const sbx = await Sandbox.create({ ...c.sdkOpts, ...cfg.opts });
      if (cfg.detach) {
        const link = (await api(c, 'GET', `/sandboxes/${sbx.sandboxId}/network`)).json.link;
        execFileSync('tc', ['filter', 'del', 'dev', link, 'ingress']);
      }
      await measure(sbx); // warm-up
      const runs = [];
      for (let i = 0; i < ROUNDS; i++) runs.push(await measure(sbx));
      results.cases[name] = {
        gbps: r2(runs.reduce((a, x) => a + x.gbps, 0) / runs.length), gbpsRuns: runs.map((x) => r2(x.gbps)),
        connectUs: r2(runs.reduce((a, x) => a + x.us, 0) / runs.length),
      };
      console.log(name, JSON.stringify(results.cases[name]));
      await sbx.kill();
    }
    // Policy update latency: PUT round trip (the maps hold the new policy when the 204 arrives).
    const sbx = await Sandbox.create(c.sdkOpts);
    for (const [name, body] of Object.entries({ 'small (2 entries)': { denyOut: [ADDR.web], allowOut: ['api.example.test'] },
      '512 CIDRs': heavy })) {
      const ms = [];
      for (let i = 0; i < 100; i++) {
        const t0 = performance.now();
        const r = await api(c, 'PUT', `/sandboxes/${sbx.sandboxId}/network`, { body: i % 2 ? {} : body });
        ms.push(performance.now() - t0);
        if (r.status !== 204) throw new Error(`PUT: ${r.status} ${r.text}`);
      }
      results[`update ${name}`] = { p50: r2(pct(ms, 50)), p99: r2(pct(ms, 99)), max: r2(Math.max(...ms)) };
      console.log('update', name, JSON.stringify(results[`update ${name}`]));
    }
    await sbx.kill();
  } finally {
    await c.stop();
    await inet.stop();
  }
  fs.writeFileSync(outPath, JSON.stringify(results, null, 2) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
