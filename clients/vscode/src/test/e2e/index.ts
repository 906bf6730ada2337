/**
 * Entry point VS Code calls (`extensionTestsPath`) inside code-server's extension host: runs the
 * `*.e2e.js` suites with mocha and rejects when any test fails, which becomes the exit code.
 * `KOMA_E2E_SUITE=install` (in code-server's environment) runs only `install.e2e.js`, which needs
 * a profile with no Koma to be found; `KOMA_E2E_SUITE=live` runs only `live.e2e.js`, which needs
 * a real model server; otherwise every other suite runs.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', timeout: 120_000, color: false, reporter: 'spec' });
  const own: Record<string, string> = { install: 'install.e2e.js', live: 'live.e2e.js' };
  const only = own[process.env.KOMA_E2E_SUITE ?? ''];
  const suites = readdirSync(__dirname).filter(
    (f) => f.endsWith('.e2e.js') && (only ? f === only : !Object.values(own).includes(f)),
  );
  for (const file of suites.sort()) {
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
