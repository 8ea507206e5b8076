// Checkpoints for long agent tasks, with the unmodified E2B SDK: pause an idle sandbox and resume it where
// it stopped, fork one state to try several next steps at once and keep the best, snapshot the result,
// roll a bad step back, pause to disk, and let an idle sandbox pause itself and wake on the next request.
// Run `bash scripts/setup.sh` first and export the variables it prints; then: npm install && node checkpoints.mjs
// Every step checks what it claims and exits non-zero if it does not hold.
import { Sandbox } from 'e2b'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`)
}
const step = (title) => console.log(`\n== ${title}`)
const project = '/home/user/project'
const runTests = async (s) => {
  // A failing test is an exit code (CommandExitError); anything else is a real error.
  const r = await s.commands.run(`cd ${project} && python3 test.py`).catch((e) => {
    if (typeof e?.exitCode !== 'number') throw e
    return e
  })
  return r.exitCode === 0
}

const sbx = await Sandbox.create({ timeoutMs: 300_000, metadata: { example: 'checkpoints' } })
console.log('sandbox', sbx.sandboxId)
const others = [] // the forks and the idle sandbox, killed at the end

try {
  step('pause with memory kept: processes stop where they are, connect resumes them')
  await sbx.commands.run('i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done', { background: true })
  await sleep(1000)
  const before = Number(await sbx.files.read('/tmp/counter'))
  await sbx.pause()
  check((await Sandbox.getInfo(sbx.sandboxId)).state === 'paused', 'the sandbox is listed as paused')
  await sleep(2000)
  await sbx.connect()
  const after = Number(await sbx.files.read('/tmp/counter'))
  console.log(`counter ${before} before the pause, ${after} right after 2 s paused: it did not run meanwhile`)
  // Running, it ticks every 0.1 s: 2 s paused would be 20 ticks.
  check(after >= before && after - before < 15, 'the counter neither restarted nor ran while paused')

  step('fork: try three next steps from one state, keep the one whose tests pass')
  await sbx.files.write(`${project}/solution.py`, 'def answer():\n    return None\n')
  await sbx.files.write(`${project}/test.py`, 'from solution import answer\nassert answer() == 42, answer()\n')
  check(!(await runTests(sbx)), 'the tests fail before the fix')
  const candidates = ['6 + 7', '6 * 7', '67']
  const branches = await sbx.fork({ count: candidates.length, timeoutMs: 120_000 })
  let winner = null
  await Promise.all(branches.map(async (b, i) => {
    if (b instanceof Error) throw b
    others.push(b)
    await b.files.write(`${project}/solution.py`, `def answer():\n    return ${candidates[i]}\n`)
    const ok = await runTests(b)
    console.log(`branch ${b.sandboxId}: return ${candidates[i]} -> tests ${ok ? 'pass' : 'fail'}`)
    if (ok) winner = candidates[i]
  }))
  check(winner === '6 * 7', 'exactly the right branch passes')
  check(!(await runTests(sbx)), 'the branches did not touch the original')
  await sbx.files.write(`${project}/solution.py`, `def answer():\n    return ${winner}\n`)
  check(await runTests(sbx), 'the winning step applied to the original passes')

  step('snapshot the good state, then roll a bad step back')
  const good = await sbx.createSnapshot()
  console.log('snapshot', good.snapshotId)
  await sbx.commands.run(`rm -rf ${project}`) // an agent's mistake
  check(!(await runTests(sbx)), 'the bad step broke the project')
  // Rollback is a CubeSandbox extension (the SDK has no call for it): a plain REST request.
  const rb = await fetch(`${process.env.E2B_API_URL}/sandboxes/${sbx.sandboxId}/rollback`, {
    method: 'POST',
    headers: { 'X-API-Key': process.env.E2B_API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ snapshotID: good.snapshotId }),
  })
  check(rb.status === 200, `rollback answered ${rb.status}`)
  check(await runTests(sbx), 'after the rollback the tests pass again')
  console.log('rolled back: the project is back, the sandbox id is the same')

  step('pause to disk: memory is given back; connect boots it again with every file')
  await sbx.pause({ keepMemory: false })
  await sbx.connect()
  check(await runTests(sbx), 'files are intact after the pause to disk')
  console.log('files kept; processes were restarted (the template start command ran again)')

  step('lifecycle: pause at timeout instead of dying, wake on the next request')
  const idle = await Sandbox.create({ timeoutMs: 5_000, lifecycle: { onTimeout: 'pause', autoResume: true } })
  others.push(idle)
  await idle.files.write('/home/user/www/index.html', 'hello after a nap\n')
  await idle.commands.run('python3 -m http.server 8080 --directory /home/user/www', { background: true })
  let state = 'running'
  for (let i = 0; i < 60 && state !== 'paused'; i++) {
    await sleep(500)
    state = (await Sandbox.getInfo(idle.sandboxId)).state
  }
  check(state === 'paused', 'paused at its timeout')
  console.log('paused at its timeout; a request through the proxy wakes it:')
  const res = await fetch(`${process.env.E2B_SANDBOX_URL}/index.html`, {
    headers: { 'E2b-Sandbox-Id': idle.sandboxId, 'E2b-Sandbox-Port': '8080' },
  })
  const text = (await res.text()).trim()
  console.log(res.status, text)
  check(res.status === 200 && text === 'hello after a nap', 'the request was answered by the resumed server')
} finally {
  await sbx.kill()
  for (const s of others) await s.kill().catch(() => null)
  // The snapshot taken here outlives its sandbox until deleted. (The fork's own snapshot goes by itself
  // with the last fork; if it is still listed, deleting it is harmless.)
  for (const s of await Sandbox.listSnapshots({ sandboxId: sbx.sandboxId }).nextItems()) {
    await Sandbox.deleteSnapshot(s.snapshotId)
  }
}
console.log('\ndone')
