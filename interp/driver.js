// cube-interp's driver for JavaScript and bash contexts (see interp/driver.c): one process per context.
// Requests arrive on stdin, one JSON object per line: {"code": "...", "env_vars": {...}}.
// Replies go to stdout as frames "\x1e<json>\n" (number_of_executions, result, error,
// end_of_execution, ready); everything else on stdout/stderr is the code's own output. Each
// execution ends with "\x1e\n" on stderr, then end_of_execution on stdout.
// SIGINT interrupts the running execution; the context stays usable.
'use strict';
const vm = require('vm');
const util = require('util');
const fs = require('fs');
const os = require('os');
const path = require('path');
const cp = require('child_process');
const readline = require('readline');

const language = process.argv[2] || 'javascript';
const frame = (o) => fs.writeSync(1, '\x1e' + JSON.stringify(o) + '\n');
let count = 0;
let interrupt = null; // set while an execution can be interrupted

process.on('SIGINT', () => { if (interrupt) interrupt(); });

function applyEnv(envVars) {
  const saved = {};
  for (const [k, v] of Object.entries(envVars || {})) {
    saved[k] = Object.prototype.hasOwnProperty.call(process.env, k) ? process.env[k] : undefined;
    process.env[k] = String(v);
  }
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  };
}

function errorFrame(e) {
  const name = (e && e.name) || 'Error';
  const value = e && e.message !== undefined ? String(e.message) : String(e);
  // the user's frames only: drop the driver's and node's internals below the cell
  const stack = (e && e.stack) ? String(e.stack).split('\n')
    .filter((l) => !/^\s+at .*(node:|driver\.js)/.test(l)).join('\n') : `${name}: ${value}`;
  return { type: 'error', name, value, traceback: stack };
}

// ---- JavaScript: one persistent vm context ----
// require() resolves from the context's working directory, so packages installed there are found
const cellRequire = require('module').createRequire(path.join(process.cwd(), '<cell>'));
const jsGlobals = {
  console, require: cellRequire, process, Buffer, URL, URLSearchParams, TextEncoder, TextDecoder,
  setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate,
  fetch: globalThis.fetch, structuredClone: globalThis.structuredClone,
  module: { exports: {} }, __dirname: process.cwd(), __filename: path.join(process.cwd(), '<cell>'),
};
const jsContext = language === 'bash' ? null : vm.createContext(jsGlobals);

async function runJs(code) {
  let value;
  let script;
  try {
    script = new vm.Script(code, { filename: `<cell ${count}>` });
  } catch (e) {
    if (!(e && e.name === 'SyntaxError' && /await/.test(String(e.message)))) throw e;
    // top-level await: run the cell as an async function body (no last-expression value)
    script = new vm.Script(`(async () => {\n${code}\n})()`, { filename: `<cell ${count}>` });
  }
  value = script.runInContext(jsContext, { breakOnSigint: true, displayErrors: false });
  if (value && typeof value.then === 'function') {
    value = await new Promise((resolve, reject) => {
      interrupt = () => reject(Object.assign(new Error('Execution interrupted'), { name: 'KeyboardInterrupt' }));
      value.then(resolve, reject);
    });
  }
  if (value !== undefined) {
    frame({ type: 'result', text: typeof value === 'string' ? value : util.inspect(value, { depth: 4 }),
      extra: {}, is_main_result: true });
  }
}

// ---- bash: one persistent bash process; each cell is sourced from a file ----
let bash = null;
let bashDone = null;
function startBash() {
  bash = cp.spawn('bash', ['--noprofile', '--norc'], { stdio: ['pipe', 'inherit', 'inherit', 'pipe'] });
  let buf = '';
  bash.stdio[3].on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (bashDone) bashDone(Number(line));
    }
  });
  const self = bash;
  self.on('exit', () => {
    if (bash !== self) return;
    bash = null;
    if (bashDone) bashDone(null);
    startBash();
  });
}

const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function runBash(code, envVars) {
  const file = path.join(os.tmpdir(), `cube-interp-bash-${process.pid}-${count}.sh`);
  fs.writeFileSync(file, code + '\n');
  let script = '';
  let restore = '';
  for (const [k, v] of Object.entries(envVars || {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) continue;
    script += `export ${k}=${quote(v)}\n`;
    restore += process.env[k] !== undefined ? `export ${k}=${quote(process.env[k])}\n` : `unset ${k}\n`;
  }
  script += `source ${quote(file)}\n__cube_rc=$?\n${restore}echo "$__cube_rc" >&3\n`;
  return new Promise((resolve) => {
    bashDone = (rc) => {
      bashDone = null;
      fs.rmSync(file, { force: true });
      resolve(rc);
    };
    interrupt = () => {
      // SIGINT to what bash runs, not to bash itself (which would end the context's state)
      try {
        for (const t of fs.readdirSync(`/proc/${bash.pid}/task`)) {
          for (const c of fs.readFileSync(`/proc/${bash.pid}/task/${t}/children`, 'utf8').split(/\s+/)) {
            if (c) try { process.kill(Number(c), 'SIGINT'); } catch { /* gone */ }
          }
        }
      } catch { /* bash gone */ }
    };
    bash.stdin.write(script);
  }).then((rc) => {
    if (rc === null) {
      frame({ type: 'error', name: 'BashExited', value: 'bash exited; a new shell was started', traceback: '' });
    } else if (rc !== 0) {
      frame({ type: 'error', name: 'ExitCode', value: `exit status ${rc}`, traceback: '' });
    }
  });
}

// ---- request loop ----
const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const req = queue.shift();
    count++;
    frame({ type: 'number_of_executions', execution_count: count });
    const restoreEnv = language === 'bash' ? () => {} : applyEnv(req.env_vars);
    try {
      if (language === 'bash') await runBash(String(req.code || ''), req.env_vars);
      else await runJs(String(req.code || ''));
    } catch (e) {
      frame(errorFrame(e));
    } finally {
      interrupt = null;
      restoreEnv();
    }
    fs.writeSync(2, '\x1e\n'); // end mark on stderr first: nothing written before it can follow it
    frame({ type: 'end_of_execution' });
  }
  busy = false;
}

if (language === 'bash') startBash();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  try { queue.push(JSON.parse(line)); } catch { return; }
  pump();
}).on('close', () => process.exit(0));
frame({ type: 'ready' });
