// npm's install step for the native addon. A binary that loads (the prebuilt one for this platform,
// or an up-to-date local build) is used as it is; otherwise the addon is built from source, its
// compiler output kept in a log instead of the terminal. A failed build never fails the install:
// qvl then runs its TypeScript kernels and says why when it starts (src/kernels/native/addon.ts).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { buildFromSource, firstError, isFresh, releaseAddon, root } from './native-build.mjs';

const require = createRequire(import.meta.url);
const failedLog = path.join(root, 'build', 'native-build-failed.log');

/** The addon file node-gyp-build would load, if it loads here (a stale local build does not count). */
function usableAddon() {
  let file;
  try {
    file = require('node-gyp-build').resolve(root);
  } catch {
    return undefined;
  }
  if (file.startsWith(path.join(root, 'build') + path.sep) && !isFresh(file)) return undefined;
  try {
    require(file);
    return file;
  } catch {
    return undefined;
  }
}

const found = usableAddon();
if (found) {
  fs.rmSync(failedLog, { force: true });
} else {
  const r = buildFromSource();
  if (r.ok) {
    fs.rmSync(failedLog, { force: true });
    console.log(`qvl: built the native addon from source in ${r.seconds.toFixed(0)} s`);
  } else {
    fs.mkdirSync(path.dirname(failedLog), { recursive: true });
    fs.writeFileSync(failedLog, r.output);
    fs.rmSync(releaseAddon, { force: true });
    console.warn(
      `qvl: no prebuilt native addon matches this machine and building it failed (${firstError(r.output)}); ` +
        `qvl will use its TypeScript backend. Compiler output: ${failedLog}`,
    );
  }
}
