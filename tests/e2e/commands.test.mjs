// commands.run and background processes through the unmodified SDK: output, exit codes, envs, cwd, users,
// stdin, kill, connect, wait, timeouts, streaming order, and a 10 MB output.

import assert from 'node:assert/strict';
import { useCubed, forEachSdk, sha256, sleep, waitFor } from './harness.mjs';

const c = useCubed();

forEachSdk(c, 'stdout, stderr and exit code 0', async ({ create }) => {
  const sbx = await create();
  const r = await sbx.commands.run('echo out; echo err >&2; printf "no newline"');
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'out\nno newline');
  assert.equal(r.stderr, 'err\n');
  assert.ok(!r.error, `unexpected error field: ${r.error}`);
});

forEachSdk(c, 'non-zero exit raises CommandExitError with exitCode and output', async ({ create, sdk }) => {
  const sbx = await create();
  await assert.rejects(sbx.commands.run('echo partial; echo bad >&2; exit 3'), (e) => {
    assert.ok(e instanceof sdk.CommandExitError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.exitCode, 3);
    assert.equal(e.stdout, 'partial\n');
    assert.equal(e.stderr, 'bad\n');
    return true;
  });
  // The sandbox keeps serving after a failed command.
  assert.equal((await sbx.commands.run('true')).exitCode, 0);
});

forEachSdk(c, 'create-level and per-command envs', async ({ create }) => {
  const sbx = await create({ envs: { GLOBAL_A: 'ga', SHARED: 'from-create' } });
  const r = await sbx.commands.run('printf "%s,%s,%s,%s" "$GLOBAL_A" "$SHARED" "$LOCAL_B" "$E2B_SANDBOX_ID"',
    { envs: { LOCAL_B: 'lb', SHARED: 'from-command' } });
  assert.equal(r.stdout, `ga,from-command,lb,${sbx.sandboxId}`);
  // Per-command envs do not leak into the next command.
  const r2 = await sbx.commands.run('printf "%s|%s" "$LOCAL_B" "$SHARED"');
  assert.equal(r2.stdout, '|from-create');
});

forEachSdk(c, 'cwd, default cwd and a missing cwd', async ({ create, sdk }) => {
  const sbx = await create();
  assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n');
  assert.equal((await sbx.commands.run('pwd')).stdout, '/home/user\n');
  assert.equal((await sbx.commands.run('mkdir -p ~/sub/dir && cd ~ && pwd', {})).stdout, '/home/user\n');
  assert.equal((await sbx.commands.run('pwd', { cwd: 'sub/dir' })).stdout, '/home/user/sub/dir\n');
  await assert.rejects(sbx.commands.run('pwd', { cwd: '/does/not/exist' }), (e) => {
    assert.ok(e instanceof sdk.SandboxError && !(e instanceof sdk.CommandExitError), `got ${e?.constructor?.name}`);
    assert.match(e.message, /does not exist/);
    return true;
  });
});

forEachSdk(c, 'user root vs default user', async ({ create, sdk }) => {
  const sbx = await create();
  const def = await sbx.commands.run('whoami; id -u; id -g; echo $HOME');
  assert.equal(def.stdout, 'user\n1000\n1000\n/home/user\n');
  const root = await sbx.commands.run('whoami; id -u; echo $HOME; pwd', { user: 'root' });
  assert.match(root.stdout, /^root\n0\n\/root\n(\/root|\/home\/user)\n$/);
  const explicitUser = await sbx.commands.run('id -un', { user: 'user' });
  assert.equal(explicitUser.stdout, 'user\n');
  // The default user cannot write where only root can.
  await assert.rejects(sbx.commands.run('touch /etc/forbidden'), sdk.CommandExitError);
  assert.equal((await sbx.commands.run('touch /etc/allowed && echo ok', { user: 'root' })).stdout, 'ok\n');
});

forEachSdk(c, 'background: list, sendStdin, closeStdin, wait', async ({ create }) => {
  const sbx = await create();
  const h = await sbx.commands.run('cat; echo done', { background: true, stdin: true });
  assert.ok(Number.isInteger(h.pid) && h.pid > 1, `pid ${h.pid}`);
  const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid);
  assert.ok(listed, 'background process not listed');
  assert.equal(listed.cmd, '/bin/bash');
  assert.ok(listed.args.includes('cat; echo done'), `args ${JSON.stringify(listed.args)}`);
  await sbx.commands.sendStdin(h.pid, 'hello ');
  await h.sendStdin('world\n');
  await sbx.commands.closeStdin(h.pid);
  const res = await h.wait();
  assert.equal(res.exitCode, 0);
  assert.equal(res.stdout, 'hello world\ndone\n');
  const after = await waitFor(async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid), 5_000);
  assert.ok(after, 'finished process still listed');
});

forEachSdk(c, 'background: kill, then kill again returns false', async ({ create, sdk }) => {
  const sbx = await create();
  const h = await sbx.commands.run('sleep 300', { background: true });
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid));
  assert.equal(await sbx.commands.kill(h.pid), true);
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof sdk.CommandExitError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.notEqual(e.exitCode, 0);
    return true;
  });
  const gone = await waitFor(async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid), 5_000);
  assert.ok(gone, 'killed process still listed');
  assert.equal(await sbx.commands.kill(h.pid), false);
  const ps = await sbx.commands.run('pgrep -x sleep || true');
  assert.equal(ps.stdout, '', 'sleep still running after kill');
});

forEachSdk(c, 'connect to a running pid and wait for it', async ({ create }) => {
  const sbx = await create();
  const h = await sbx.commands.run('for i in $(seq 1 20); do echo tick $i; sleep 0.1; done; exit 7',
    { background: true });
  await h.disconnect();
  await sleep(300);
  const seen = [];
  const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => seen.push(d) });
  assert.equal(h2.pid, h.pid);
  const res = await h2.wait().catch((e) => e);
  assert.equal(res.exitCode, 7);
  const text = seen.join('');
  assert.match(text, /tick 20\n$/, `connected output: ${JSON.stringify(text)}`);
  // Live output after the attach must be complete and in order.
  const nums = [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
  for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1] + 1, `out of order: ${nums}`);
});

forEachSdk(c, 'connect to an unknown pid is NotFoundError', async ({ create, sdk }) => {
  const sbx = await create();
  await assert.rejects(sbx.commands.connect(999999), sdk.NotFoundError);
  await assert.rejects(sbx.commands.sendStdin(999999, 'x'), sdk.NotFoundError);
});

forEachSdk(c, 'timeoutMs kills the command', async ({ create, sdk }) => {
  const sbx = await create();
  const t0 = Date.now();
  await assert.rejects(sbx.commands.run('sleep 30; echo never', { timeoutMs: 1_500 }), (e) => {
    assert.ok(e instanceof sdk.TimeoutError, `got ${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  const took = Date.now() - t0;
  assert.ok(took >= 1_400 && took < 6_000, `timeout took ${took} ms`);
  // The server must have killed it too (the deadline is the process lifetime).
  const killed = await waitFor(async () => (await sbx.commands.run('pgrep -x sleep || true')).stdout === '', 5_000, 250);
  assert.ok(killed, 'process still running after its Connect-Timeout-Ms deadline');
});

forEachSdk(c, 'onStdout/onStderr arrive in order while the command runs', async ({ create }) => {
  const sbx = await create();
  const events = [];
  const t0 = Date.now();
  const r = await sbx.commands.run('for i in 1 2 3 4 5; do echo o$i; echo e$i >&2; sleep 0.4; done', {
    onStdout: (d) => events.push({ s: 'out', d, t: Date.now() - t0 }),
    onStderr: (d) => events.push({ s: 'err', d, t: Date.now() - t0 }),
  });
  const total = Date.now() - t0;
  const out = events.filter((e) => e.s === 'out');
  const err = events.filter((e) => e.s === 'err');
  assert.equal(out.map((e) => e.d).join(''), 'o1\no2\no3\no4\no5\n');
  assert.equal(err.map((e) => e.d).join(''), 'e1\ne2\ne3\ne4\ne5\n');
  assert.equal(r.stdout, 'o1\no2\no3\no4\no5\n');
  // Streaming, not buffered: first chunk well before the end, chunks spread over the run.
  assert.ok(out.length >= 3, `stdout arrived in ${out.length} chunk(s): ${JSON.stringify(events)}`);
  assert.ok(out[0].t < total - 1_000, `first stdout at ${out[0].t} ms, command ended at ${total} ms`);
  assert.ok(out[out.length - 1].t - out[0].t >= 1_000, `chunks bunched: ${out.map((e) => e.t)}`);
  const o3 = out.find((e) => e.d.includes('o3'));
  const o4 = out.find((e) => e.d.includes('o4'));
  assert.ok(o4.t - o3.t >= 250, `o3@${o3.t} o4@${o4.t}`);
});

function expectedSeq(n) {
  const parts = [];
  for (let i = 1; i <= n; i++) parts.push(`${i}\n`);
  return Buffer.from(parts.join(''));
}

forEachSdk(c, 'a 10 MB output arrives intact', { timeout: 120_000 }, async ({ create }) => {
  const sbx = await create();
  const expected = expectedSeq(1_500_000); // 10 888 896 bytes, every line unique
  let chunks = 0;
  const r = await sbx.commands.run('seq 1 1500000', { onStdout: () => { chunks++; } });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout.length, expected.length, `got ${r.stdout.length} bytes, want ${expected.length}`);
  assert.equal(sha256(Buffer.from(r.stdout)), sha256(expected));
  assert.ok(chunks > 1, 'expected the output in several chunks');
  // Binary-ish high-volume stderr in parallel also survives.
  const r2 = await sbx.commands.run('head -c 3000000 /dev/zero | tr "\\0" "z" >&2; echo end');
  assert.equal(r2.stderr.length, 3_000_000);
  assert.ok(/^z+$/.test(r2.stderr));
  assert.equal(r2.stdout, 'end\n');
});
