// The code interpreter (port 49999) through the unmodified @e2b/code-interpreter SDK: state across
// runCode calls, streamed stdout, errors, matplotlib PNGs, pandas HTML, contexts (isolation, restart,
// removal), JavaScript and bash, per-execution envs, interrupts on timeout, and the snippets.
// Most tests share one sandbox of the `code-interpreter` template; the SDK default name
// `code-interpreter-v1` is exercised by the concurrency test.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import { Sandbox } from '@e2b/code-interpreter';
import { useCubed, ctest, api, dataRequest, accessToken } from './harness.mjs';

const c = useCubed();
let sbx;
let shared;
// One sandbox for the tests below, made by the first test that needs it (after cubed is up).
const ensure = async () => {
  shared ??= Sandbox.create('code-interpreter', { ...c.sdkOpts, timeoutMs: 600_000 });
  sbx = await shared;
};
after(async () => {
  if (sbx) await api(c, 'DELETE', `/sandboxes/${sbx.sandboxId}`).catch(() => null);
});

ctest(c, 'state persists: x = 1, then x + 1 is 2', async () => {
  await ensure();
  const a = await sbx.runCode('x = 1');
  assert.equal(a.error, undefined);
  assert.deepEqual(a.results, []);
  const b = await sbx.runCode('x + 1');
  assert.equal(b.text, '2');
  assert.equal(b.results.length, 1);
  assert.equal(b.results[0].isMainResult, true);
  assert.ok(b.executionCount > a.executionCount, `execution counts ${a.executionCount} then ${b.executionCount}`);
});

ctest(c, 'print output reaches onStdout in order while the cell runs', async () => {
  await ensure();
  const seen = [];
  const done = sbx.runCode('import time\nprint("first", flush=True)\ntime.sleep(1.5)\nprint("second")', {
    onStdout: (m) => seen.push({ line: m.line, at: Date.now() }),
  });
  const exec = await done;
  const finishedAt = Date.now();
  assert.deepEqual(seen.map((s) => s.line), ['first\n', 'second\n']);
  assert.deepEqual(exec.logs.stdout, ['first\n', 'second\n']);
  // "first" arrived while the cell was still sleeping, not with the end of the response
  assert.ok(finishedAt - seen[0].at >= 1000, `first line came ${finishedAt - seen[0].at} ms before the end`);
});

ctest(c, 'an exception gives execution.error with name, value and traceback', async () => {
  await ensure();
  const errors = [];
  const exec = await sbx.runCode('def f():\n    return 1 / 0\nf()', { onError: (e) => errors.push(e) });
  assert.equal(exec.error.name, 'ZeroDivisionError');
  assert.equal(exec.error.value, 'division by zero');
  // IPython's traceback (with its terminal colors) names the frames and the failing line
  const plain = exec.error.traceback.replace(/\x1b\[[0-9;]*m/g, '');
  assert.match(plain, /ZeroDivisionError/);
  assert.match(plain, /return 1 \/ 0/);
  assert.match(plain, /----> 3 f\(\)/);
  assert.equal(errors.length, 1);
  // the context keeps working
  assert.equal((await sbx.runCode('x')).text, '1');
});

ctest(c, 'a matplotlib plot is a PNG result', async () => {
  await ensure();
  const exec = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()');
  assert.equal(exec.error, undefined, exec.error?.traceback);
  const png = exec.results.find((r) => r.png);
  assert.ok(png, `no png in ${JSON.stringify(exec.results.map((r) => r.formats()))}`);
  const bytes = Buffer.from(png.png, 'base64');
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(bytes.length > 1000);
  assert.equal(png.isMainResult, false);
});

ctest(c, 'a pandas DataFrame is an HTML result', async () => {
  await ensure();
  const exec = await sbx.runCode('import pandas as pd\npd.DataFrame({"name": ["a", "b"], "value": [10, 20]})');
  assert.equal(exec.error, undefined, exec.error?.traceback);
  const r = exec.results[0];
  assert.match(r.html, /<table/);
  assert.match(r.html, /value/);
  assert.match(r.text, /name\s+value/);
  assert.equal(r.isMainResult, true);
  // and as data: the columns as lists
  assert.deepEqual(r.data, { name: ['a', 'b'], value: [10, 20] });
});

ctest(c, 'contexts do not share state; restart clears one; removal', async () => {
  await ensure();
  const one = await sbx.createCodeContext();
  const two = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' });
  assert.equal(one.language, 'python');
  assert.equal(two.cwd, '/tmp');
  await sbx.runCode('secret = 41', { context: one });
  assert.equal((await sbx.runCode('secret + 1', { context: one })).text, '42');
  const other = await sbx.runCode('secret', { context: two });
  assert.equal(other.error?.name, 'NameError');
  // a str result's text loses its repr quotes, as with E2B
  assert.equal((await sbx.runCode('import os; os.getcwd()', { context: two })).text, '/tmp');
  // the default context does not see it either
  assert.equal((await sbx.runCode('secret')).error?.name, 'NameError');

  const ids = (await sbx.listCodeContexts()).map((x) => x.id);
  assert.ok(ids.includes(one.id) && ids.includes(two.id), JSON.stringify(ids));

  await sbx.restartCodeContext(one);
  assert.equal((await sbx.runCode('secret', { context: one })).error?.name, 'NameError');
  assert.equal((await sbx.runCode('1 + 1', { context: one })).text, '2');

  await sbx.removeCodeContext(two);
  assert.ok(!(await sbx.listCodeContexts()).some((x) => x.id === two.id));
  await assert.rejects(sbx.runCode('1', { context: two }), /not found/i);
  await sbx.removeCodeContext(one);
});

ctest(c, 'JavaScript and bash contexts run code', async () => {
  await ensure();
  const js = await sbx.runCode('const answer = 6 * 7;\nconsole.log("from js");\nanswer', { language: 'js' });
  assert.equal(js.error, undefined, js.error?.traceback);
  assert.equal(js.text, '42');
  assert.deepEqual(js.logs.stdout, ['from js\n']);
  // state persists in the default javascript context; require works
  assert.equal((await sbx.runCode('answer + 1', { language: 'javascript' })).text, '43');
  assert.equal((await sbx.runCode('require("os").platform()', { language: 'javascript' })).text, 'linux');
  const jsErr = await sbx.runCode('throw new TypeError("bad")', { language: 'javascript' });
  assert.equal(jsErr.error.name, 'TypeError');
  assert.equal(jsErr.error.value, 'bad');

  const ctx = await sbx.createCodeContext({ language: 'bash' });
  const sh = await sbx.runCode('GREETING=hello\necho "$GREETING from $(basename $SHELL 2>/dev/null || echo bash)"; echo oops >&2',
    { context: ctx });
  assert.match(sh.logs.stdout.join(''), /^hello from /);
  assert.equal(sh.logs.stderr.join(''), 'oops\n');
  assert.equal((await sbx.runCode('echo $GREETING', { context: ctx })).logs.stdout.join(''), 'hello\n');
});

ctest(c, 'per-execution envs are set for one execution only', async () => {
  await ensure();
  const a = await sbx.runCode('import os\nos.environ.get("CUBE_TEST_VAR")', { envs: { CUBE_TEST_VAR: 'one-shot' } });
  assert.equal(a.text, 'one-shot');
  const b = await sbx.runCode('os.environ.get("CUBE_TEST_VAR") is None');
  assert.equal(b.text, 'True');
  const js = await sbx.runCode('process.env.CUBE_TEST_VAR', { language: 'js', envs: { CUBE_TEST_VAR: 'js-too' } });
  assert.equal(js.text, 'js-too');
});

ctest(c, 'envs given at create reach every context', async () => {
  const box = await Sandbox.create('code-interpreter', { ...c.sdkOpts, envs: { CUBE_GLOBAL: 'from-create' } });
  try {
    assert.equal((await box.runCode('import os; os.environ["CUBE_GLOBAL"]')).text, 'from-create');
    assert.equal((await box.runCode('process.env.CUBE_GLOBAL', { language: 'js' })).text, 'from-create');
    // a per-execution value wins for one execution, then the global value is back
    assert.equal((await box.runCode('os.environ["CUBE_GLOBAL"]', { envs: { CUBE_GLOBAL: 'once' } })).text, 'once');
    assert.equal((await box.runCode('os.environ["CUBE_GLOBAL"]')).text, 'from-create');
  } finally {
    await api(c, 'DELETE', `/sandboxes/${box.sandboxId}`).catch(() => null);
  }
});

ctest(c, 'a long cell with timeoutMs is interrupted and the context still works', async () => {
  await ensure();
  await sbx.runCode('counter = 0');
  await assert.rejects(
    sbx.runCode('import time\nwhile True:\n    counter += 1\n    time.sleep(0.01)', { timeoutMs: 1500 }),
    (e) => e.name === 'TimeoutError' || /timed? ?out/i.test(e.message));
  // interrupted, not left running: the next cell runs at once and the counter stops moving
  const first = await sbx.runCode('counter', { timeoutMs: 20_000 });
  assert.ok(Number(first.text) > 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await sbx.runCode('counter')).text, first.text);

  await assert.rejects(sbx.runCode('while (true) {}', { language: 'js', timeoutMs: 1500 }));
  assert.equal((await sbx.runCode('answer', { language: 'js', timeoutMs: 20_000 })).text, '42');
});

ctest(c, 'the issue\'s snippets: square roots, and a three-turn pandas session', async () => {
  await ensure();
  const out = [];
  const roots = await sbx.runCode('import math\ndata = [1, 4, 9, 16, 25]\nroots = [math.sqrt(x) for x in data]\nprint(roots)\nroots',
    { onStdout: (m) => out.push(m.line) });
  assert.deepEqual(out, ['[1.0, 2.0, 3.0, 4.0, 5.0]\n']);
  assert.equal(roots.text, '[1.0, 2.0, 3.0, 4.0, 5.0]');

  await sbx.runCode('import pandas as pd\ndf = pd.DataFrame({"city": ["Paris", "Rome"], "temp": [21, 25]})');
  await sbx.runCode('df["temp_f"] = df["temp"] * 9 / 5 + 32');
  const printed = await sbx.runCode('print(df)');
  const text = printed.logs.stdout.join('');
  assert.match(text, /city\s+temp\s+temp_f/);
  assert.match(text, /Paris\s+21\s+69\.8/);
  assert.match(text, /Rome\s+25\s+77\.0/);
});

ctest(c, '/execute needs the sandbox access token; /contexts and /health do not', async () => {
  await ensure();
  const req = (p, opts = {}) => dataRequest(c, { sandboxId: sbx.sandboxId, port: 49999, route: 'headers', path: p, ...opts });
  const body = JSON.stringify({ code: '1 + 1' });
  const json = { 'Content-Type': 'application/json' };
  assert.equal((await req('/execute', { method: 'POST', body, headers: json })).status, 401);
  assert.equal((await req('/execute', { method: 'POST', body, headers: { ...json, 'X-Access-Token': 'wrong' } })).status, 401);
  const ok = await req('/execute', { method: 'POST', body, headers: { ...json, 'X-Access-Token': accessToken(sbx) } });
  assert.equal(ok.status, 200);
  const lines = ok.text.trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.at(-1).type, 'end_of_execution');
  assert.ok(lines.some((l) => l.type === 'result' && l.text === '2'));
  const health = await req('/health');
  assert.equal(health.status, 200);
  assert.equal(health.json, 'OK');
  assert.equal((await req('/contexts')).status, 200);
  // malformed bodies and conflicting selectors
  const tok = { ...json, 'X-Access-Token': accessToken(sbx) };
  assert.equal((await req('/execute', { method: 'POST', body: '{"nope":1}', headers: tok })).status, 422);
  assert.equal((await req('/execute', { method: 'POST', body: '{"code":"1","context_id":"x","language":"python"}', headers: tok })).status, 400);
  const missing = await req('/execute', { method: 'POST', body: '{"code":"1","context_id":"no-such"}', headers: tok });
  assert.equal(missing.status, 404);
  assert.equal(missing.text, 'Context no-such not found');
});

ctest(c, '10 sandboxes execute at once (SDK default template code-interpreter-v1)', { timeout: 180_000 }, async () => {
  const made = [];
  try {
    const boxes = await Promise.all(Array.from({ length: 10 }, async () => {
      const s = await Sandbox.create(c.sdkOpts);
      made.push(s.sandboxId);
      return s;
    }));
    const execs = await Promise.all(boxes.map((s, i) => s.runCode(`import os\nprint(os.getpid() > 0)\n${i} * 3`)));
    execs.forEach((e, i) => {
      assert.equal(e.error, undefined, e.error?.traceback);
      assert.equal(e.text, String(i * 3));
      assert.deepEqual(e.logs.stdout, ['True\n']);
    });
    // sandboxes are separate: each has its own state
    await Promise.all(boxes.map((s, i) => s.runCode(`mine = ${i}`)));
    const back = await Promise.all(boxes.map((s) => s.runCode('mine')));
    back.forEach((e, i) => assert.equal(e.text, String(i)));
  } finally {
    await Promise.all(made.map((id) => api(c, 'DELETE', `/sandboxes/${id}`).catch(() => null)));
  }
});
