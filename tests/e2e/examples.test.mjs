// The runnable examples under examples/, against a private cubed, configured only by the environment
// variables their READMEs tell users to export: they must keep working as the service changes. Each
// example checks what it claims and exits non-zero otherwise; its output is checked here too, and what it
// leaves behind.

import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useCubed, ctest, run, repoDir, api, DOMAIN } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const c = useCubed();

// An example imports 'e2b': a copy runs from a dir whose node_modules/e2b is the suite's pinned SDK of the
// version the example's package.json names.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cube-e2e-examples-'));
fs.mkdirSync(path.join(dir, 'node_modules'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function runExample(name, file) {
  const pinned = JSON.parse(fs.readFileSync(path.join(repoDir, 'examples', name, 'package.json'), 'utf8')).dependencies.e2b;
  const sdk = ['e2b-2.51', 'e2b-2.45'].map((p) => path.join(here, 'node_modules', p))
    .find((p) => JSON.parse(fs.readFileSync(path.join(p, 'package.json'), 'utf8')).version === pinned);
  assert.ok(sdk, `examples/${name} pins e2b ${pinned}, which the suite does not install`);
  const link = path.join(dir, 'node_modules', 'e2b');
  fs.rmSync(link, { force: true });
  fs.symlinkSync(sdk, link);
  fs.copyFileSync(path.join(repoDir, 'examples', name, file), path.join(dir, file));
  const r = await run(process.execPath, [path.join(dir, file)], {
    timeoutMs: 240_000,
    env: { E2B_API_URL: c.apiUrl, E2B_SANDBOX_URL: c.sandboxUrl, E2B_API_KEY: c.apiKey, E2B_DOMAIN: DOMAIN },
  });
  assert.equal(r.code, 0, `examples/${name}/${file} failed (${r.error || r.signal || r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function leftovers() {
  const sandboxes = (await api(c, 'GET', '/v2/sandboxes?state=running,paused')).json;
  const snapshots = (await api(c, 'GET', '/snapshots')).json;
  return { sandboxes, snapshots };
}

ctest(c, 'examples/quickstart runs as its README says', { timeout: 120_000 }, async () => {
  const out = await runExample('quickstart', 'quickstart.mjs');
  assert.match(out, /^python 3\.\d+\.\d+$/m);
  assert.match(out, /^root inside is root \(an unprivileged uid on the host\)$/m);
  assert.match(out, /^hello from a sandbox$/m);
  assert.match(out, /^via the proxy: 200 print\("hello from a sandbox"\)$/m);
  assert.deepEqual(await leftovers(), { sandboxes: [], snapshots: [] });
});

ctest(c, 'examples/checkpoints: pause, fork, snapshot, rollback, pause to disk, auto-pause and wake', { timeout: 240_000 }, async () => {
  const out = await runExample('checkpoints', 'checkpoints.mjs');
  assert.match(out, /^counter \d+ before the pause, \d+ right after 2 s paused: it did not run meanwhile$/m);
  assert.equal(out.match(/^branch \w+: return .* -> tests (pass|fail)$/gm).length, 3);
  assert.match(out, /^branch \w+: return 6 \* 7 -> tests pass$/m);
  assert.match(out, /^rolled back: the project is back, the sandbox id is the same$/m);
  assert.match(out, /^files kept; processes were restarted/m);
  assert.match(out, /^200 hello after a nap$/m);
  assert.match(out, /\ndone\n$/);
  assert.deepEqual(await leftovers(), { sandboxes: [], snapshots: [] }, 'the example cleans up after itself');
});
