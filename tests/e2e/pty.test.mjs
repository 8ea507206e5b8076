// Pseudo-terminals through the unmodified SDK: create with onData, sendInput, resize, kill, exit code.

import assert from 'node:assert/strict';
import { useCubed, forEachSdk, waitFor } from './harness.mjs';

const c = useCubed();
const enc = (s) => new TextEncoder().encode(s);

function collector() {
  const dec = new TextDecoder();
  const st = { text: '', onData: (d) => { st.text += dec.decode(d, { stream: true }); } };
  return st;
}

// Wait until the terminal output (after `from`) matches re; returns the match.
async function expectOutput(st, re, from = 0, ms = 10_000) {
  const m = await waitFor(() => st.text.slice(from).match(re), ms, 50);
  assert.ok(m, `pty output never matched ${re}; got ${JSON.stringify(st.text.slice(from).slice(-500))}`);
  return m;
}

forEachSdk(c, 'pty: create, sendInput, output through onData', async ({ create }) => {
  const sbx = await create();
  const st = collector();
  const term = await sbx.pty.create({ cols: 80, rows: 24, onData: st.onData, timeoutMs: 60_000 });
  assert.ok(term.pid > 1);
  // Arithmetic so the expected text is not the echo of what we typed.
  await sbx.pty.sendInput(term.pid, enc('echo $((40+2))mark\n'));
  await expectOutput(st, /42mark\r?\n/);
  await sbx.pty.sendInput(term.pid, enc('tty; id -un\n'));
  await expectOutput(st, /\/dev\/pts\/\d+\r?\n(user|root)\r?\n/);
  // The pty shows up in commands.list.
  assert.ok((await sbx.commands.list()).some((p) => p.pid === term.pid), 'pty process not listed');
  await sbx.pty.kill(term.pid);
});

forEachSdk(c, 'pty: resize changes stty size', async ({ create }) => {
  const sbx = await create();
  const st = collector();
  const term = await sbx.pty.create({ cols: 80, rows: 24, onData: st.onData, timeoutMs: 60_000 });
  await sbx.pty.sendInput(term.pid, enc('stty size\n'));
  await expectOutput(st, /[\r\n]24 80\r?\n/);
  const mark = st.text.length;
  await sbx.pty.resize(term.pid, { cols: 132, rows: 41 });
  await sbx.pty.sendInput(term.pid, enc('stty size\n'));
  await expectOutput(st, /[\r\n]41 132\r?\n/, mark);
  await sbx.pty.kill(term.pid);
});

forEachSdk(c, 'pty: kill returns true then false and ends the handle', async ({ create, sdk }) => {
  const sbx = await create();
  const st = collector();
  const term = await sbx.pty.create({ cols: 80, rows: 24, onData: st.onData, timeoutMs: 60_000 });
  await sbx.pty.sendInput(term.pid, enc('echo alive$((1+1))\n'));
  await expectOutput(st, /alive2/);
  assert.equal(await sbx.pty.kill(term.pid), true);
  const res = await term.wait().then((r) => r, (e) => e);
  assert.ok(res instanceof sdk.CommandExitError, `wait after kill gave ${res?.constructor?.name}: ${JSON.stringify(res)}`);
  assert.notEqual(res.exitCode, 0);
  const gone = await waitFor(async () => !(await sbx.commands.list()).some((p) => p.pid === term.pid), 5_000);
  assert.ok(gone, 'killed pty still listed');
  assert.equal(await sbx.pty.kill(term.pid), false);
});

forEachSdk(c, 'pty: exit status of the shell is reported', async ({ create, sdk }) => {
  const sbx = await create();
  const st = collector();
  const term = await sbx.pty.create({ cols: 80, rows: 24, onData: st.onData, timeoutMs: 60_000, envs: { PTYVAR: 'pv' } });
  await sbx.pty.sendInput(term.pid, enc('echo "[$PTYVAR]"; exit 5\n'));
  const res = await term.wait().then((r) => r, (e) => e);
  assert.match(st.text, /\[pv\]/);
  assert.ok(res instanceof sdk.CommandExitError, `got ${res?.constructor?.name}`);
  assert.equal(res.exitCode, 5);
});
