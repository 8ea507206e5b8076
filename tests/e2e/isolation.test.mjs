// Isolation proofs: own PID 1 and hostname, no host processes or files, private writable layers, root is
// not host root, memory and fork bombs contained, and mount / module loading / reboot / bpf refused.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { useCubed, ctest, loadSdk, api, templatesDir, hostPids, readProc, waitFor, sleep } from './harness.mjs';

const c = useCubed(); // its after() hook kills every sandbox, including those made here
const UID_BASE = 200_000_000;
const made = [];

async function newSandbox(opts = {}) {
  const { Sandbox } = await loadSdk('e2b-2.51');
  const sbx = await Sandbox.create({ ...c.sdkOpts, ...opts });
  made.push(sbx);
  return sbx;
}
const sh = async (sbx, cmd, opts = {}) => {
  try { return await sbx.commands.run(cmd, opts); } catch (e) {
    if (e && typeof e.exitCode === 'number') return e; // CommandExitError carries stdout/stderr/exitCode
    throw e;
  }
};
const asRoot = (sbx, cmd, opts = {}) => sh(sbx, cmd, { user: 'root', ...opts });

// python3 snippet that performs a raw syscall and prints "<ret> <errno name>". Integer args are passed as
// C longs; `attr` is a zeroed 120-byte buffer starting with the given u32s (a valid BPF_MAP_CREATE attr).
const rawSyscall = (nr, args, attrWords = []) => `python3 - <<'EOF'
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
attr = (ctypes.c_uint32 * 30)(${attrWords.join(', ')})
r = libc.syscall(${nr}, ${args.map((a) => (/^-?(0x)?[0-9a-fA-F]+$/.test(a) ? `L(${a})` : a)).join(', ')})
e = ctypes.get_errno()
print(r, errno.errorcode.get(e, e) if r == -1 else 'OK')
EOF`;

ctest(c, 'own PID 1 (envd) and own hostname', async () => {
  const sbx = await newSandbox();
  const r = await sh(sbx, 'tr "\\0" " " < /proc/1/cmdline; echo; hostname; cat /proc/sys/kernel/hostname; echo $$');
  const [cmd1, hn, hn2] = r.stdout.split('\n');
  assert.match(cmd1, /envd/, `PID 1 is ${cmd1}`);
  assert.notEqual(hn, os.hostname());
  assert.ok(hn.length > 0);
  assert.equal(hn, hn2);
  assert.equal(hn, sbx.sandboxId, 'hostname should be the sandbox id');
  // PID 1 is not the host's init.
  assert.notEqual(cmd1.trim(), (readProc(1, 'cmdline') ?? '').replaceAll('\0', ' ').trim());
});

ctest(c, 'no host processes are visible', async () => {
  const marker = `cube-host-marker-${randomBytes(4).toString('hex')}`;
  const hostProc = spawn('sh', ['-c', `exec -a ${marker} sleep 120`], { stdio: 'ignore' });
  try {
    await waitFor(() => hostPids().some((p) => (readProc(p, 'cmdline') ?? '').startsWith(marker)), 3_000);
    const sbx = await newSandbox();
    const r = await sh(sbx, `ls -d /proc/[0-9]* | wc -l; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c '[${marker[0]}]${marker.slice(1)}' || true`);
    const [count, seen] = r.stdout.trim().split('\n').map(Number);
    assert.ok(count < 20, `sandbox sees ${count} processes (host has ${hostPids().length})`);
    assert.equal(seen, 0, 'host marker process visible inside the sandbox');
    const k = await asRoot(sbx, `kill -0 ${hostProc.pid} 2>&1; echo rc=$?`);
    assert.match(k.stdout, /rc=1/, `kill -0 of a host pid: ${k.stdout}`);
  } finally {
    hostProc.kill('SIGKILL');
  }
});

ctest(c, 'host files are invisible', async () => {
  const marker = path.join('/tmp', `cube-host-file-${randomBytes(4).toString('hex')}`);
  fs.writeFileSync(marker, 'host secret');
  try {
    const sbx = await newSandbox();
    const r = await asRoot(sbx, `test -e ${marker} && echo visible || echo hidden; test -e ${c.stateDir} && echo state-visible || echo state-hidden; test -e /work && echo work || echo nowork; cat /etc/debian_version`);
    assert.match(r.stdout, /^hidden\nstate-hidden\nnowork\n/);
    // The sandbox's /tmp is its own: a file written there does not appear on the host.
    await sh(sbx, 'echo inside > /tmp/inside-only');
    assert.equal(fs.existsSync('/tmp/inside-only'), false);
  } finally {
    fs.rmSync(marker, { force: true });
  }
});

ctest(c, "one sandbox's writes are invisible to others and to the template", async () => {
  const a = await newSandbox();
  const b = await newSandbox();
  const tag = randomBytes(4).toString('hex');
  const w = await asRoot(a, `echo ${tag} > /etc/owned-by-a && echo ${tag} > /home/user/a.txt && rm -f /usr/bin/curl && echo ok`);
  assert.equal(w.stdout, 'ok\n');
  assert.equal((await sh(a, 'cat /etc/owned-by-a')).stdout, `${tag}\n`);
  const checks = 'test -e /etc/owned-by-a && echo leak1; test -e /home/user/a.txt && echo leak2; test -x /usr/bin/curl && echo curl-ok';
  assert.equal((await sh(b, checks)).stdout, 'curl-ok\n');
  const fresh = await newSandbox();
  assert.equal((await sh(fresh, checks)).stdout, 'curl-ok\n');
  const rootfs = path.join(templatesDir, 'base', 'rootfs');
  assert.equal(fs.existsSync(path.join(rootfs, 'etc/owned-by-a')), false, 'write reached the template');
  assert.equal(fs.existsSync(path.join(rootfs, 'usr/bin/curl')), true, 'delete reached the template');
});

ctest(c, 'sandbox root is not host root', async () => {
  const sbx = await newSandbox();
  const m = await asRoot(sbx, 'cat /proc/self/uid_map /proc/self/gid_map; id -u');
  const lines = m.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  assert.equal(lines[0], `0 ${UID_BASE} 65536`);
  assert.equal(lines[1], `0 ${UID_BASE} 65536`);
  assert.equal(lines[2], '0');
  // Find the sandbox's processes from the host: their real host uids are in the mapped range.
  const tag = String(1_000_000 + Math.floor(Math.random() * 1_000_000));
  await asRoot(sbx, `sleep ${tag}`, { background: true });
  await sh(sbx, `sleep ${Number(tag) + 1}`, { background: true });
  const find = (t) => hostPids().find((p) => (readProc(p, 'cmdline') ?? '') === `sleep\0${t}\0`);
  const rootPid = await waitFor(() => find(tag), 5_000);
  const userPid = await waitFor(() => find(Number(tag) + 1), 5_000);
  assert.ok(rootPid && userPid, 'sandbox sleep processes not found from the host');
  const uids = (pid) => readProc(pid, 'status').match(/^Uid:\s+(.*)$/m)[1].split(/\s+/).map(Number);
  for (const u of uids(rootPid)) assert.equal(u, UID_BASE, `sandbox root runs as host uid ${u}`);
  for (const u of uids(userPid)) assert.equal(u, UID_BASE + 1000);
  // Hardening flags of sandbox processes.
  const st = readProc(rootPid, 'status');
  assert.match(st, /^NoNewPrivs:\s+1$/m);
  assert.match(st, /^Seccomp:\s+2$/m);
  const capBnd = BigInt('0x' + st.match(/^CapBnd:\s+([0-9a-f]+)$/m)[1]);
  for (const [name, bit] of [['CAP_SYS_MODULE', 16n], ['CAP_SYS_RAWIO', 17n], ['CAP_SYS_BOOT', 22n], ['CAP_SYS_TIME', 25n], ['CAP_MAC_ADMIN', 33n]]) {
    assert.equal((capBnd >> bit) & 1n, 0n, `${name} still in the bounding set (${capBnd.toString(16)})`);
  }
  // Different net namespace from the host.
  assert.notEqual(fs.readlinkSync(`/proc/${rootPid}/ns/net`), fs.readlinkSync('/proc/self/ns/net'));
  assert.notEqual(fs.readlinkSync(`/proc/${rootPid}/ns/pid`), fs.readlinkSync('/proc/self/ns/pid'));
  assert.notEqual(fs.readlinkSync(`/proc/${rootPid}/ns/user`), fs.readlinkSync('/proc/self/ns/user'));
});

ctest(c, 'mount, module loading, reboot and bpf fail', async () => {
  const sbx = await newSandbox();
  const mnt = await asRoot(sbx, 'mount -t tmpfs x /mnt 2>&1; echo rc=$?');
  assert.doesNotMatch(mnt.stdout, /rc=0/, `mount succeeded: ${mnt.stdout}`);
  const remount = await asRoot(sbx, 'mount -o remount,rw / 2>&1; echo rc=$?');
  assert.doesNotMatch(remount.stdout, /rc=0$/m, `remount succeeded: ${remount.stdout}`);
  const nested = await asRoot(sbx, 'unshare -rm sh -c "mount -t tmpfs x /mnt && echo MOUNTED" 2>&1; echo rc=$?');
  assert.doesNotMatch(nested.stdout, /MOUNTED/, `mount through a nested user namespace succeeded: ${nested.stdout}`);

  // finit_module(-1, "", 0): permission checks come before the fd check, so EBADF would mean "allowed".
  const fm = await asRoot(sbx, rawSyscall(313, ['-1', 'b""', '0']));
  assert.match(fm.stdout, /^-1 (EPERM|ENOSYS)\n$/, `finit_module: ${fm.stdout}${fm.stderr}`);
  const im = await asRoot(sbx, rawSyscall(175, ['None', '0', 'b""']));
  assert.match(im.stdout, /^-1 (EPERM|ENOSYS)\n$/, `init_module: ${im.stdout}${im.stderr}`);
  // bpf(BPF_MAP_CREATE, {ARRAY, key 4, value 4, 1 entry}, 120): host root gets a map fd here.
  const bpf = await asRoot(sbx, rawSyscall(321, ['0', 'attr', '120'], [2, 4, 4, 1]));
  assert.match(bpf.stdout, /^-1 (EPERM|ENOSYS)\n$/, `bpf: ${bpf.stdout}${bpf.stderr}`);
  // reboot(LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_POWER_OFF): if allowed it would kill the sandbox.
  const rb = await asRoot(sbx, rawSyscall(169, ['0xfee1dead', '672274793', '0x4321FEDC', 'None']));
  assert.match(rb.stdout, /^-1 (EPERM|ENOSYS)\n$/, `reboot: ${rb.stdout}${rb.stderr}`);
  const rbCmd = await asRoot(sbx, '(reboot -f || /sbin/reboot -f || systemctl reboot -f) >/dev/null 2>&1; echo still-here');
  assert.equal(rbCmd.stdout, 'still-here\n');
  // Device nodes: no raw disk or kmem access.
  const dev = await asRoot(sbx, 'ls /dev; mknod /tmp/sda b 8 0 2>&1; echo rc=$?; cat /dev/kmem 2>&1 | head -c 64; echo');
  assert.doesNotMatch(dev.stdout, /^(sda|vda|nvme0|kmem|mem)$/m, `host devices visible: ${dev.stdout}`);
  assert.doesNotMatch(dev.stdout, /rc=0/, `mknod of a block device succeeded: ${dev.stdout}`);
  assert.equal((await sh(sbx, 'echo alive')).stdout, 'alive\n');
});

ctest(c, 'a memory bomb is killed; the sandbox, cubed and other sandboxes keep working', { timeout: 120_000 }, async () => {
  const sbx = await newSandbox();
  const other = await newSandbox();
  const info = await sbx.getInfo();
  const capMB = Math.min(info.memoryMB * 3, 8192);
  assert.ok(capMB * 1024 * 1024 < os.freemem() * 0.7, `not enough host memory to prove the limit (need ${capMB} MB)`);
  // Allocates in 32 MB steps up to 3x the sandbox limit; prints SURVIVED if the limit did not stop it.
  const bomb = `python3 -c "
a = []
for i in range(${Math.ceil(capMB / 32)}):
    a.append(bytearray(b'x' * (32 << 20)))
print('SURVIVED', len(a) * 32)
"`;
  const t0 = Date.now();
  const r = await sh(sbx, bomb, { timeoutMs: 90_000 });
  assert.doesNotMatch(r.stdout ?? '', /SURVIVED/, `allocated ${capMB} MB with a ${info.memoryMB} MB limit`);
  assert.notEqual(r.exitCode, 0, 'memory bomb exited 0');
  assert.ok(Date.now() - t0 < 90_000);
  assert.equal((await sh(sbx, 'echo alive')).stdout, 'alive\n', 'sandbox (envd) died with the bomb');
  assert.equal((await sh(other, 'echo other-alive')).stdout, 'other-alive\n');
  assert.equal((await api(c, 'GET', '/health', { key: null })).status, 204);
  assert.equal(await sbx.isRunning(), true);
});

ctest(c, 'a fork bomb is contained by the pids limit', { timeout: 120_000 }, async () => {
  const sbx = await newSandbox();
  const other = await newSandbox();
  // Exponential fork bomb bounded at 2^12 processes even if no limit applied; all exit after ~8 s.
  await sbx.files.write('/tmp/forkbomb.py', `
import os, time
k = 12
while k > 0:
    k -= 1
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
time.sleep(8)
os._exit(0)
`);
  const before = hostPids().length;
  await sh(sbx, 'python3 /tmp/forkbomb.py', { background: true, timeoutMs: 0 });
  let peak = 0;
  let otherOk = false;
  let healthOk = true;
  const deadline = Date.now() + 6_000;
  while (Date.now() < deadline) {
    peak = Math.max(peak, hostPids().filter((p) => (readProc(p, 'cmdline') ?? '').startsWith('python3\0/tmp/forkbomb.py')).length);
    if (!otherOk) otherOk = (await sh(other, 'echo ok', { requestTimeoutMs: 5_000 }).catch(() => ({}))).stdout === 'ok\n';
    if ((await api(c, 'GET', '/health', { key: null, timeoutMs: 5_000 }).catch(() => ({}))).status !== 204) healthOk = false;
    await sleep(200);
  }
  assert.ok(peak > 200, `fork bomb never got going (peak ${peak})`);
  assert.ok(peak <= 1100, `fork bomb reached ${peak} processes; pids limit not applied`);
  assert.ok(otherOk, 'another sandbox could not run a command during the fork bomb');
  assert.ok(healthOk, 'cubed /health failed during the fork bomb');
  const recovered = await waitFor(async () => (await sh(sbx, 'echo alive', { requestTimeoutMs: 5_000 })).stdout === 'alive\n', 30_000, 500);
  assert.ok(recovered, 'bombed sandbox did not answer again after the bomb ended');
  // The bomb's processes sleep 8 s before exiting: give them time, then none may be left over.
  const drained = await waitFor(() => hostPids().length < before + 50, 20_000, 250);
  assert.ok(drained, `host still has ${hostPids().length - before} extra processes`);
});
