// Validates CSAF documents with the BSI csaf-validator-lib: the official JSON schema (strict)
// and every mandatory test ("basic" preset). Usage: node validate-csaf.mjs FILE...
import { readFileSync } from 'node:fs'
import validate from '@secvisogram/csaf-validator-lib/validate.js'
import * as basic20 from '@secvisogram/csaf-validator-lib/basic.js'
import * as basic21 from '@secvisogram/csaf-validator-lib/csaf_2_1/basic.js'
import * as optional20 from '@secvisogram/csaf-validator-lib/optionalTests.js'
import * as recommended21 from '@secvisogram/csaf-validator-lib/csaf_2_1/recommendedTests.js'

let failed = 0
for (const file of process.argv.slice(2)) {
  const doc = JSON.parse(readFileSync(file, 'utf8'))
  const v21 = doc?.document?.csaf_version === '2.1'
  const result = await validate(Object.values(v21 ? basic21 : basic20), doc)
  const advice = await validate(Object.values(v21 ? recommended21 : optional20), doc)
  const errors = result.tests.flatMap((t) => t.errors.map((e) => `${t.name} ${e.instancePath}: ${e.message}`))
  const notes = advice.tests.flatMap((t) => [...t.errors, ...t.warnings].map((e) => `${t.name} ${e.instancePath}: ${e.message}`))
  console.log(`${result.isValid ? 'ok  ' : 'FAIL'} CSAF ${v21 ? '2.1' : '2.0'} schema + ${result.tests.length - 1} mandatory tests: ${file}`)
  for (const e of errors) console.log(`     error: ${e}`)
  for (const n of notes) console.log(`     ${v21 ? 'recommended' : 'optional'} test: ${n}`)
  if (!result.isValid) failed++
}
process.exit(failed ? 1 : 0)
