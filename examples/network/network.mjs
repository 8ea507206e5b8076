// Egress policy with the unmodified E2B SDK against CubeSandbox. Run `bash scripts/setup.sh` first and
// export the variables it prints; then: npm install && ALLOWED=example.com node network.mjs
// (ALLOWED: a domain the sandbox may reach; everything else is closed.)
import { Sandbox } from 'e2b'

const allowed = process.env.ALLOWED || 'example.com'

// Only `allowed` (resolved through cubed's resolver) on any port; no other internet, no private
// ranges, no cloud metadata, no host, no other sandboxes. allowPublicTraffic=false: the proxy wants a
// token on the sandbox's ports.
const sbx = await Sandbox.create({
  allowInternetAccess: false,
  network: { allowOut: [allowed], allowPublicTraffic: false },
  timeoutMs: 120_000,
})
console.log('sandbox', sbx.sandboxId, 'traffic token', sbx.trafficAccessToken)

const probe = (host, port) => sbx.commands.run(
  `python3 -c "import socket; socket.create_connection(('${host}', ${port}), timeout=3); print('open')"`,
).then((r) => r.stdout.trim(), () => 'closed')

console.log(`${allowed}:443 ->`, await probe(allowed, 443))
console.log('169.254.169.254:80 (metadata) ->', await probe('169.254.169.254', 80))

// Replace the policy while the sandbox runs: from now on, nothing goes out.
await sbx.updateNetwork({ allowInternetAccess: false })
console.log(`${allowed}:443 after the update ->`, await probe(allowed, 443))

console.log('policy now:', (await sbx.getInfo()).network)
await sbx.kill()
