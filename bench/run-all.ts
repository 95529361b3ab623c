// Runs every benchmark in bench/ one after another (npm run bench). Each prints its own table.
// Run one alone with: node --import tsx bench/<name>.ts
import { spawnSync } from 'node:child_process';

const BENCHES = ['codec.ts', 'quant.ts', 'data.ts', 'dynamic.ts', 'static.ts', 'web.ts', 'calib.ts', 'real-models.ts', 'methods.ts', 'vs-pytorch.ts', 'weight-only.ts', 'large-model.ts', 'qoperator.ts', 'train.ts'];
for (const b of BENCHES) {
  console.log(`\n### bench/${b}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${b}`], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench/${b} failed (exit ${r.status})`);
    process.exitCode = 1;
  }
}
