// The unmodified E2B SDK against CubeSandbox. Run `bash scripts/setup.sh` first and export the three
// variables it prints (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY); then: npm install && node quickstart.mjs
import { Sandbox } from 'e2b'

const sbx = await Sandbox.create({ metadata: { example: 'quickstart' }, timeoutMs: 120_000 })
console.log('sandbox', sbx.sandboxId)

// Commands: streamed output, exit codes, users.
const py = await sbx.commands.run('python3 -c "import platform; print(platform.python_version())"')
console.log('python', py.stdout.trim())
const who = await sbx.commands.run('id -un', { user: 'root' })
console.log('root inside is', who.stdout.trim(), '(an unprivileged uid on the host)')

// Files.
await sbx.files.write('/home/user/hello.py', 'print("hello from a sandbox")\n')
const out = await sbx.commands.run('python3 /home/user/hello.py')
console.log(out.stdout.trim())

// A server inside the sandbox, reached through the proxy with the routing headers.
await sbx.commands.run('python3 -m http.server 8080 --directory /home/user', { background: true })
await new Promise((r) => setTimeout(r, 500))
const res = await fetch(`${process.env.E2B_SANDBOX_URL}/hello.py`, {
  headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080' },
})
console.log('via the proxy:', res.status, (await res.text()).trim())

await sbx.kill()
