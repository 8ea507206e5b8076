// Build a template with the unmodified E2B SDK against CubeSandbox, then use it. Run `bash scripts/setup.sh`
// first and export the variables it prints; then: npm install && node build.mjs
import { Sandbox, Template, waitForPort } from 'e2b'

const template = Template({ fileContextPath: import.meta.dirname })
  .fromTemplate('base')
  .copy('app.py', '/opt/hello/app.py')
  .runCmd('python3 -m py_compile /opt/hello/app.py && echo "built on $(date -u)" > /opt/hello/BUILT')
  .setEnvs({ GREETING_FROM: 'a CubeSandbox template' })
  .setStartCmd('python3 /opt/hello/app.py', waitForPort(8080))

await Template.build(template, 'hello-app', { onBuildLogs: (l) => console.log('build:', l.message) })

const sbx = await Sandbox.create('hello-app', { timeoutMs: 120_000 })
console.log('sandbox', sbx.sandboxId, (await sbx.commands.run('cat /opt/hello/BUILT')).stdout.trim())
const res = await fetch(process.env.E2B_SANDBOX_URL, {
  headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080' },
})
console.log('via the proxy:', res.status, (await res.text()).trim())
await sbx.kill()
