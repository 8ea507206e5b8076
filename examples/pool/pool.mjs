// Creates 20 sandboxes with the pool off, then 20 with it on, and prints the create -> first command
// time of each. Needs E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY (printed by scripts/setup.sh) and root
// for cubemastercli (admin socket; CUBE_SOCKET overrides its default path).
import { execFileSync } from 'node:child_process';
import { Sandbox } from 'e2b';

const cli = process.env.CUBEMASTERCLI || 'cubemastercli';
const sock = process.env.CUBE_SOCKET ? ['--socket', process.env.CUBE_SOCKET] : [];
const pool = (...args) => execFileSync(cli, [...sock, 'pool', ...args], { encoding: 'utf8' });

async function round(label) {
  const ms = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const sbx = await Sandbox.create({ envs: { RUN: String(i) } });
    const r = await sbx.commands.run('echo $RUN');
    ms.push(performance.now() - t0);
    if (r.stdout.trim() !== String(i)) throw new Error('the request env did not reach the sandbox');
    await sbx.kill();
  }
  ms.sort((a, b) => a - b);
  console.log(`${label}: create -> first command p50 ${ms[10].toFixed(1)} ms, max ${ms[19].toFixed(1)} ms`);
}

pool('set', 'base', '--max', '0');
await round('pool off');
pool('set', 'base', '--min', '4', '--max', '8');
await new Promise((r) => setTimeout(r, 2000)); // let it fill
await round('pool on ');
console.log(pool('get', 'base'));
pool('set', 'base', '--max', '0');
