// Baseline for benches/executor.rs: the same three functions in Node.js `vm`, a fresh
// context per call (what isolation between executions needs), one worker per CPU like the
// pool. Prints calls per second per case.
//   node benches/node/vm_baseline.mjs [seconds-per-case]
import vm from "node:vm";
import os from "node:os";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";

const CASES = {
  sum: { source: "(p) => ({sum: p.a + p.b})", secrets: 0 },
  sum_secrets: { source: "(p, s) => ({sum: p.a + p.b, n: Object.keys(s).length})", secrets: 4 },
  fib25: { source: "(p) => { const fib = (n) => n < 2 ? n : fib(n - 1) + fib(n - 2); return {fib: fib(25)} }", secrets: 0 },
};

function runFor(caseName, millis) {
  const { source, secrets } = CASES[caseName];
  const secretValues = {};
  for (let i = 0; i < secrets; i++) secretValues[`SECRET_${i}`] = `value-${i}-0123456789`;
  const paramsJson = JSON.stringify({ a: 20, b: 22 });
  const secretsJson = JSON.stringify(secretValues);
  let calls = 0;
  const end = performance.now() + millis;
  while (performance.now() < end) {
    // Fresh context per call; params and secrets cross in as JSON, the output leaves as
    // JSON, as in the service.
    const context = vm.createContext({ params: JSON.parse(paramsJson) });
    const fn = vm.runInContext(source, context);
    const out = fn(JSON.parse(paramsJson), JSON.parse(secretsJson));
    JSON.stringify(out);
    calls++;
  }
  return calls;
}

if (isMainThread) {
  const seconds = Number(process.argv[2] ?? 5);
  const workers = os.availableParallelism();
  console.log(`node ${process.version}, ${workers} workers, ${seconds}s per case`);
  for (const caseName of Object.keys(CASES)) {
    const counts = await Promise.all(
      Array.from({ length: workers }, () =>
        new Promise((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { caseName, millis: seconds * 1000 } });
          w.once("message", resolve);
          w.once("error", reject);
        }),
      ),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    console.log(`${caseName}: ${(total / seconds).toFixed(0)} calls/s`);
  }
} else {
  parentPort.postMessage(runFor(workerData.caseName, workerData.millis));
}
