/**
 * Entry point VS Code calls (`extensionTestsPath`) inside code-server's extension host: runs the
 * `*.e2e.js` suites with mocha and rejects when any test fails, which becomes the exit code.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', timeout: 120_000, color: false, reporter: 'spec' });
  for (const file of readdirSync(__dirname).filter((f) => f.endsWith('.e2e.js')).sort()) {
    mocha.addFile(path.join(__dirname, file));
  }
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const stats = runner.stats ?? { passes: 0, failures };
      console.log(`KOMA-E2E-RESULT ${JSON.stringify({ passed: stats.passes, failed: stats.failures })}`);
      if (failures > 0) {
        reject(new Error(`${failures} end-to-end test(s) failed`));
      } else {
        resolve();
      }
    });
  });
}
