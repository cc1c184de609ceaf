// Reads the conformance suite's results (<dir>/server-<scenario>-<timestamp>/checks.json)
// and prints one tally line per scenario, then the details of every failing check and
// the message of every warning. Exit status: 1 if any check failed or no check ran.
// With BASELINE (the suite's --expected-failures YAML: `server:` then `- scenario` or
// `- scenario:check-id` lines), the failures it lists are reported as expected, not failed.
//
//   node checks.mjs LABEL DIR [BASELINE]
import { readdirSync, readFileSync, statSync } from 'fs';
import { join } from 'path';

const [label, dir, baselineFile] = process.argv.slice(2);
const baseline = new Set(
  baselineFile
    ? readFileSync(baselineFile, 'utf8')
        .split('\n')
        .map((line) => line.replace(/#.*$/, '').trim())
        .filter((line) => line.startsWith('- '))
        .map((line) => line.slice(2).trim())
    : [],
);
const isExpected = (scenario, check) => baseline.has(scenario) || baseline.has(`${scenario}:${check.id}`);
let expectedCount = 0;
const clip = (text, max = 1500) => (text.length > max ? `${text.slice(0, max)} …(${text.length - max} more chars)` : text);

let passed = 0;
let failed = 0;
let scenarios = 0;
const problems = [];
for (const entry of readdirSync(dir).sort()) {
  const file = join(dir, entry, 'checks.json');
  try {
    statSync(file);
  } catch {
    continue;
  }
  const scenario = entry.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
  let checks;
  try {
    checks = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    problems.push(`FAIL ${label} ${scenario}: unreadable ${file}: ${error.message}`);
    failed += 1;
    continue;
  }
  scenarios += 1;
  const count = (status) => checks.filter((check) => check.status === status).length;
  const expectedHere = checks.filter((check) => check.status === 'FAILURE' && isExpected(scenario, check)).length;
  expectedCount += expectedHere;
  const [ok, bad, warn] = [count('SUCCESS'), count('FAILURE') - expectedHere, count('WARNING')];
  passed += ok;
  failed += bad;
  const skipped = count('SKIPPED');
  const tail = `${expectedHere ? `, ${expectedHere} expected (baseline)` : ''}${skipped ? `, ${skipped} skipped` : ''}`;
  console.log(`${bad > 0 ? 'FAIL' : 'ok  '} ${label} ${scenario}: ${ok} passed, ${bad} failed, ${warn} warnings${tail}`);
  for (const check of checks) {
    if (check.status === 'FAILURE' && isExpected(scenario, check)) {
      problems.push(`expected ${label} ${scenario} [${check.id}] (baseline): ${check.errorMessage ?? ''}`);
    } else if (check.status === 'FAILURE') {
      problems.push(
        `FAIL ${label} ${scenario} [${check.id}] ${check.description ?? ''}\n` +
          `     error: ${check.errorMessage ?? '(no message)'}\n` +
          `     details: ${clip(JSON.stringify(check.details ?? null))}`,
      );
    } else if (check.status === 'WARNING') {
      problems.push(`warn ${label} ${scenario} [${check.id}] ${check.errorMessage ?? check.description ?? ''}`);
    }
  }
}
for (const line of problems) console.log(line);
console.log(
  `${label}: ${scenarios} scenarios, ${passed} checks passed, ${failed} failed${expectedCount ? `, ${expectedCount} expected (baseline)` : ''}`,
);
process.exit(failed > 0 || scenarios === 0 ? 1 : 0);
