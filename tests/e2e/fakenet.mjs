// A small fake "internet" for the network-policy tests, built only from namespaces and links this file
// creates: a network namespace with HTTP servers (which echo who they are and the request headers),
// UDP echo servers and an authoritative DNS server (dnsmasq), joined to the host by one veth pair.
// Traffic from the test's sandbox pool is confined by a policy-routing rule to a table with /32 routes to
// the fake servers and an unreachable default, so nothing a sandbox sends can use the host's default
// route. The host itself (cubed's resolver and header forwarder) reaches the public fake servers through
// /32 routes in the main table; those addresses differ per instance (a block of 16 picked at start), so
// test runs on one machine do not collide. Addresses are documentation/benchmark ranges.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './harness.mjs';

// Filled in by the FakeInternet constructor (one per test process): block k of 16 addresses.
export const ADDR = {};
function addresses(k) {
  return {
    api: `203.0.113.${16 * k + 10}`,     // api.example.test (allowed by "*.example.test")
    web: `203.0.113.${16 * k + 11}`,     // web.example.test and plain public server
    dns: `203.0.113.${16 * k + 13}`,
    other: `198.51.100.${16 * k + 10}`,  // other.test
    private: `10.213.${k}.10`,           // a private-range server (sandbox table only)
    metadata: '169.254.169.254',         // (sandbox table only)
  };
}
const HOST_ROUTED = ['api', 'web', 'dns', 'other'];
export const PORTS = { http: 80, odd: 8443, udp: 9999, sink: 5001 };  // sink: counts bytes (benchmarks)

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const tryIp = (...args) => { try { ip(...args); } catch { /* already gone */ } };

const SERVER_PY = `
import hashlib, http.server, json, socket, socketserver, sys, threading
addrs = sys.argv[1].split(',')
ports = [int(p) for p in sys.argv[2].split(',')]
udp_port = int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # Authorization is echoed only as a hash: the header-injection test must not hand the secret back.
        hs = {k.lower(): v for k, v in self.headers.items()}
        if 'authorization' in hs:
            hs['authorization_sha256'] = hashlib.sha256(hs.pop('authorization').encode()).hexdigest()
        body = json.dumps({'server': self.server.server_address[0], 'port': self.server.server_address[1],
                           'path': self.path, 'headers': hs}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
def udp(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, udp_port))
    while True:
        d, peer = s.recvfrom(2048)
        s.sendto(b'echo:' + a.encode() + b':' + d, peer)
def sink(conn):
    n = 0
    while True:
        d = conn.recv(1 << 20)
        if not d: break
        n += len(d)
    conn.sendall(str(n).encode()); conn.close()
def sinks(a):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((a, 5001)); s.listen(64)
    while True:
        threading.Thread(target=sink, args=(s.accept()[0],), daemon=True).start()
threading.Thread(target=sinks, args=(addrs[0],), daemon=True).start()
for a in addrs:
    for p in ports:
        threading.Thread(target=S((a, p), H).serve_forever, daemon=True).start()
    threading.Thread(target=udp, args=(a,), daemon=True).start()
print('ready', flush=True)
threading.Event().wait()
`;

export const FLOOD_NAMES = 1100;   // more than cubed's 1024 learned addresses per sandbox

export class FakeInternet {
  constructor() {
    const tag = randomBytes(3).toString('hex');
    this.ns = `cbt-inet-${tag}`;
    this.hostLink = `cbtr${tag}`;   // "cbt": never the "cb<hex>" prefix of a cubed instance
    this.table = String(20000 + (parseInt(tag, 16) % 10000));
    // The sandbox pool of the cubed under test: 198.19.N.0/24 (benchmark range, not the default pool).
    this.pool = `198.19.${1 + (parseInt(tag, 16) % 250)}.0/24`;
    // The host <-> fake-internet link: a /30 in 198.19.0.0/24, which no pool above uses. (Never a
    // documentation range such as 192.0.2.0/24: hosts, CI machines among them, may use it for real.)
    const q = 4 * (parseInt(tag, 16) % 64);
    this.uplinkHost = `198.19.0.${q + 1}`;
    this.uplinkInet = `198.19.0.${q + 2}`;
    this.block = parseInt(tag, 16) % 15;
    Object.assign(ADDR, addresses(this.block));
    this.procs = [];
  }

  async start() {
    const { ns, hostLink, table, pool, uplinkHost, uplinkInet } = this;
    ip('netns', 'add', ns);
    ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', ns);
    ip('addr', 'add', `${uplinkHost}/30`, 'dev', hostLink);
    ip('link', 'set', hostLink, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', `${uplinkInet}/30`, 'dev', 'uplink');
    ip('-n', ns, 'link', 'set', 'uplink', 'up');
    // Host routes for a block no other fake internet on this machine uses right now.
    for (let i = 0; ; i++) {
      const added = [];
      try {
        for (const k of HOST_ROUTED) {
          ip('route', 'add', `${ADDR[k]}/32`, 'via', uplinkInet, 'dev', hostLink);
          added.push(ADDR[k]);
        }
        break;
      } catch (e) {
        for (const a of added) tryIp('route', 'del', `${a}/32`, 'dev', hostLink);
        if (i >= 14) throw e;
        this.block = (this.block + 1) % 15;
        Object.assign(ADDR, addresses(this.block));
      }
    }
    // No default route in the fake internet: it answers only the (masqueraded) uplink address.
    for (const a of Object.values(ADDR)) {
      ip('-n', ns, 'addr', 'add', `${a}/32`, 'dev', 'lo');
      ip('route', 'add', `${a}/32`, 'via', uplinkInet, 'dev', hostLink, 'table', table);
    }
    ip('route', 'add', 'unreachable', 'default', 'table', table);
    // Traffic to the pool (cubed's DNS answers from a gateway address) keeps using the main table.
    ip('rule', 'add', 'to', pool, 'lookup', 'main', 'pref', '99');
    ip('rule', 'add', 'from', pool, 'lookup', table, 'pref', '100');
    const servers = [ADDR.api, ADDR.web, ADDR.other, ADDR.private, ADDR.metadata];
    // n<i>.flood.example.test -> 100.66.<i/250>.<i%250+1>: distinct addresses for the DNS flood test.
    this.hostsFile = path.join(os.tmpdir(), `${ns}.hosts`);
    fs.writeFileSync(this.hostsFile, Array.from({ length: FLOOD_NAMES },
      (_, i) => `100.66.${Math.floor(i / 250)}.${(i % 250) + 1} n${i}.flood.example.test`).join('\n') + '\n');
    await this.spawnReady('python3', ['-c', SERVER_PY, servers.join(','), `${PORTS.http},${PORTS.odd}`, String(PORTS.udp)]);
    // Authoritative for the test names; everything else is REFUSED (no upstream, no recursion).
    await this.spawnReady('dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll',
      '--conf-file=/dev/null', '--pid-file=', '--user=root', '--bind-interfaces', `--listen-address=${ADDR.dns}`,
      '--port=53', '--local-ttl=300', '--log-facility=-',
      `--host-record=api.example.test,${ADDR.api}`, `--host-record=web.example.test,${ADDR.web}`,
      `--host-record=example.test,${ADDR.web}`, `--host-record=other.test,${ADDR.other}`,
      `--host-record=private.test,${ADDR.private}`, `--addn-hosts=${this.hostsFile}`], 'started');
    return this;
  }

  // Run a program inside the namespace; resolve once it prints `marker`.
  async spawnReady(cmd, args, marker = 'ready') {
    const p = spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) throw new Error(`${cmd} exited in the fake internet: ${out}`);
      if (out.includes(marker)) return;
      await sleep(100);
    }
    throw new Error(`${cmd} did not start in the fake internet (exit ${p.exitCode}, ${Date.now() - deadline + 15_000} ms): ${out}`);
  }

  cubedArgs() {
    return ['--net-pool', this.pool, '--dns-upstream', ADDR.dns];
  }

  async stop() {
    for (const p of this.procs) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
    tryIp('rule', 'del', 'from', this.pool, 'lookup', this.table, 'pref', '100');
    tryIp('rule', 'del', 'to', this.pool, 'lookup', 'main', 'pref', '99');
    tryIp('route', 'flush', 'table', this.table);
    tryIp('link', 'del', this.hostLink);   // takes the /32 routes with it
    tryIp('netns', 'del', this.ns);
    if (this.hostsFile) fs.rmSync(this.hostsFile, { force: true });
  }
}

// A TCP listener on every host address (the sandboxes must not reach it).
export async function hostListener() {
  const srv = net.createServer((s) => { s.end('host\n'); });
  await new Promise((r) => srv.listen(0, '0.0.0.0', r));
  return srv;
}

// Python run inside a sandbox: try TCP (HTTP GET) and UDP targets in parallel; prints one JSON object
// {"<key>": "ok:<body>" | "err:<reason>"} per target. Dropped packets show up as timeouts.
const PROBE_PY = `
import json, socket, sys, threading
targets = json.loads(sys.argv[1]); out = {}
def tcp(k, host, port):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.settimeout(3)
        s.sendall(('GET /probe HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' % host).encode())
        data = b''
        while True:
            d = s.recv(65536)
            if not d: break
            data += d
        out[k] = 'ok:' + data.decode(errors='replace').split('\\r\\n\\r\\n', 1)[-1]
    except Exception as e:
        out[k] = 'err:' + type(e).__name__ + ':' + str(e)
def udp(k, host, port):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b'ping', (socket.gethostbyname(host), port))
        out[k] = 'ok:' + s.recvfrom(2048)[0].decode()
    except Exception as e:
        out[k] = 'err:' + type(e).__name__ + ':' + str(e)
ts = [threading.Thread(target=udp if t[0] == 'udp' else tcp, args=(k, t[1], t[2])) for k, t in targets.items()]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
`;

// targets: {key: ['tcp'|'udp', host, port]} -> {key: {ok, body}}
export async function probe(sbx, targets) {
  const r = await sbx.commands.run(`python3 -c '${PROBE_PY.replace(/'/g, `'"'"'`)}' '${JSON.stringify(targets)}'`,
    { timeoutMs: 30_000 });
  const res = JSON.parse(r.stdout.trim().split('\n').pop());
  return Object.fromEntries(Object.entries(res).map(([k, v]) => [k, { ok: v.startsWith('ok:'), body: v.slice(3) }]));
}
