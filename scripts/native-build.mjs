// Building the native addon from source with node-gyp, quietly: the compiler's output goes to the
// caller (a log file) rather than the terminal. Shared by the install step and the prebuilds script.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (this file lives in scripts/). */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The local build node-gyp writes. */
export const releaseAddon = path.join(root, 'build', 'Release', 'qvl_native.node');

/** Newest modification time of binding.gyp and the C++ sources in native/: a binary older than this is stale. */
export function newestSourceMs() {
  const dir = path.join(root, 'native');
  const files = [path.join(root, 'binding.gyp'), ...fs.readdirSync(dir).filter((f) => /\.(cc|h|inc)$/.test(f)).map((f) => path.join(dir, f))];
  return Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
}

/** True when `file` exists and is at least as new as every native source. */
export function isFresh(file) {
  return fs.existsSync(file) && fs.statSync(file).mtimeMs >= newestSourceMs();
}

/**
 * Runs `node-gyp rebuild` in the package root. npm hands its own node-gyp to lifecycle scripts
 * (npm_config_node_gyp); outside npm, a node-gyp on the PATH is used.
 * @returns {{ ok: boolean, output: string, seconds: number }}
 */
export function buildFromSource() {
  const t0 = Date.now();
  const gyp = process.env.npm_config_node_gyp;
  const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}\n` : ''}`;
  return { ok: r.status === 0 && fs.existsSync(releaseAddon), output, seconds: (Date.now() - t0) / 1000 };
}

/** The line of a failed build's output that says what went wrong. */
export function firstError(output) {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  const hit = lines.find((l) => /\berror\b|not found|ENOENT/i.test(l) && !/^gyp (info|ERR! (cwd|node|System|command|not ok))/.test(l));
  return (hit ?? lines.at(-1) ?? 'node-gyp failed').slice(0, 240);
}
