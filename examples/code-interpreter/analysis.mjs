// @e2b/code-interpreter against CubeSandbox: stateful Python, streaming, a chart, errors, JS and bash.
import fs from 'node:fs'
import { Sandbox } from '@e2b/code-interpreter'

const sbx = await Sandbox.create()   // template code-interpreter-v1
try {
  await sbx.runCode(`import pandas as pd
df = pd.DataFrame({"city": ["Paris", "Rome", "Oslo"], "temp_c": [21, 25, 9]})`)
  await sbx.runCode('df["temp_f"] = df["temp_c"] * 9 / 5 + 32')
  const table = await sbx.runCode('print(df)')
  console.log(table.logs.stdout.join(''))

  await sbx.runCode('import time\nfor i in range(3):\n    print("step", i)\n    time.sleep(0.3)', {
    onStdout: (m) => process.stdout.write(`streamed: ${m.line}`),
  })

  const chart = await sbx.runCode(`import matplotlib.pyplot as plt
plt.bar(df["city"], df["temp_c"])
plt.title("Temperature")
plt.show()`)
  const png = chart.results.find((r) => r.png)
  fs.writeFileSync('chart.png', Buffer.from(png.png, 'base64'))
  console.log('wrote chart.png')

  const failed = await sbx.runCode('df["missing"]')
  console.log(`error: ${failed.error.name}: ${failed.error.value}`)

  const js = await sbx.runCode('[1, 2, 3].map((x) => x * x)', { language: 'js' })
  console.log('javascript:', js.text)
  const bash = await sbx.createCodeContext({ language: 'bash' })
  const sh = await sbx.runCode('cd /tmp && pwd && uname -s', { context: bash })
  console.log('bash:', sh.logs.stdout.join('').trim().replace(/\n/g, ' '))
} finally {
  await sbx.kill()
}
