// Makes the prebuilt binary the package ships: prebuilds/linux-x64/node.napi.glibc.node, the name
// node-gyp-build looks for (an N-API binary serves every later Node version). It is the local
// Release build, rebuilt first if a native source is newer, and stripped. Run by `npm pack`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { buildFromSource, firstError, isFresh, releaseAddon, root } from './native-build.mjs';

const musl = fs.existsSync('/etc/alpine-release');
if (process.platform !== 'linux' || process.arch !== 'x64' || musl) {
  console.log(`qvl: prebuilt binaries are made on linux-x64 with glibc; this is ${process.platform}-${process.arch}${musl ? ' (musl)' : ''}, so the package will build from source`);
  process.exit(0);
}
if (!isFresh(releaseAddon)) {
  const r = buildFromSource();
  if (!r.ok) {
    console.error(`qvl: building the native addon failed: ${firstError(r.output)}`);
    process.exit(1);
  }
}
const out = path.join(root, 'prebuilds', 'linux-x64', 'node.napi.glibc.node');
fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.copyFileSync(releaseAddon, out);
// symbols are for debugging a local build; the shipped one is a third smaller without them
const strip = spawnSync('strip', ['--strip-unneeded', out]);
console.log(`qvl: ${path.relative(root, out)} (${(fs.statSync(out).size / 1024).toFixed(0)} KiB${strip.status === 0 ? ', stripped' : ''})`);
