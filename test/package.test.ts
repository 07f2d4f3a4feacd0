/**
 * The package as a user gets it: `npm pack`, the tarball installed into an empty project (from the
 * file, dependencies from npm's cache), then used from plain Node, from strict TypeScript and as
 * `npx qvl`; and installed where the native addon can be neither loaded prebuilt nor compiled.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.join(import.meta.dirname, '..');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' });
const skip = npmVersion.status === 0 ? false : 'npm is not available on this machine';
const linuxGlibcX64 = process.platform === 'linux' && process.arch === 'x64' && !fs.existsSync('/etc/alpine-release');

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qvl-package-'));
const app = path.join(scratch, 'app');
const installed = path.join(app, 'node_modules', 'qvl');

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000, ...opts, env: { ...process.env, ...opts.env } });
  return { code: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), error: r.error };
}

// What a user writes: five lines of plain JavaScript.
const APP_MJS = `import { Qwen3VL } from 'qvl';
const demo = 'node_modules/qvl/models/demo';
const model = await Qwen3VL.fromPretrained(demo);
const { text } = await model.chat([{ role: 'user', content: [{ type: 'image', image: demo + '/example.png' }, { type: 'text', text: 'What colour is the shape?' }] }], { temperature: 0 });
console.log(text, JSON.stringify(model.info()));
`;

const CONSUMER_TS = `import { Qwen3VL, QvlError, type ChatResult, type ModelInfo } from 'qvl';
const model = await Qwen3VL.fromPretrained('node_modules/qvl/models/demo', { backend: 'auto', threads: 2, quant: 'q8' });
const r: ChatResult = await model.chat([{ role: 'user', content: 'Hello' }], { maxNewTokens: 4, temperature: 0 });
const answer: string = r.text;
const tokens: number = r.usage.completionTokens;
const info: ModelInfo = model.info();
for await (const delta of model.stream([{ role: 'user', content: 'Hi' }])) console.log(delta, answer, tokens, info.isa ?? info.backend);
export const isQvl = (e: unknown): e is QvlError => e instanceof QvlError;
`;

let tarball = '';

test('npm pack: compiled JavaScript, declarations, the demo model and the prebuilt addon; no sources, fixtures or tools', { skip }, (t) => {
  const r = run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: ROOT });
  assert.equal(r.code, 0, (r.stdout + r.stderr).slice(-4000));
  // lifecycle scripts print before npm's JSON report
  const [report] = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n[') + 1)) as { filename: string; size: number; unpackedSize: number; entryCount: number; files: { path: string }[] }[];
  tarball = path.join(scratch, report!.filename);
  const mb = (n: number) => (n / 1024 ** 2).toFixed(1);
  t.diagnostic(`tarball ${mb(report!.size)} MB, unpacked ${mb(report!.unpackedSize)} MB, ${report!.entryCount} files`);
  assert.ok(fs.statSync(tarball).size < 60 * 1024 ** 2, `tarball ${fs.statSync(tarball).size} bytes`);
  const files = report!.files.map((f) => f.path);
  for (const want of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/api/worker-bootstrap.mjs', 'models/demo/model.safetensors', 'binding.gyp', 'native/addon.cc', 'scripts/install-native.mjs']) {
    assert.ok(files.includes(want), `${want} is missing from the package`);
  }
  if (linuxGlibcX64) assert.ok(files.includes('prebuilds/linux-x64/node.napi.glibc.node'), 'no prebuilt addon');
  const stray = files.filter((f) => /^(src|test|datasets|tools|bench|build)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.deepEqual(stray, []);
});

test('installed from the tarball, plain Node answers a question on the demo model (native backend, no compiler needed)', { skip }, () => {
  assert.ok(tarball, 'npm pack failed');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'qvl-consumer', private: true, type: 'module' }));
  // no compiler: a prebuilt addon that loads is used as it is
  const install = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: app, env: { CXX: 'false', CC: 'false' } });
  assert.equal(install.code, 0, install.stderr);
  assert.ok(!fs.existsSync(path.join(installed, 'src')), 'TypeScript sources were installed');
  fs.writeFileSync(path.join(app, 'app.mjs'), APP_MJS);
  const r = run(process.execPath, ['app.mjs'], { cwd: app });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Red\./);
  const info = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { backend: string; isa?: string };
  if (linuxGlibcX64) {
    assert.equal(info.backend, 'native', r.stderr);
    assert.match(info.isa ?? '', /^(avx512vnni\+avx2(?:vnni)?-gemv|avx512vnni|avx512|avx2vnni|avx2|scalar)$/);
    assert.doesNotMatch(r.stderr, /TypeScript backend/);
  }
});

test('a strict NodeNext TypeScript project type-checks against the package, and a wrong type is caught', { skip }, () => {
  assert.ok(fs.existsSync(installed), 'the package is not installed');
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', skipLibCheck: true, noEmit: true, types: [] }, files: ['good.ts'] }),
  );
  fs.writeFileSync(path.join(app, 'good.ts'), CONSUMER_TS);
  const good = run(process.execPath, [TSC, '-p', '.'], { cwd: app });
  assert.equal(good.code, 0, good.stdout + good.stderr);
  fs.writeFileSync(path.join(app, 'bad.ts'), `${CONSUMER_TS}export const wrong: number = answer;\n`);
  fs.writeFileSync(path.join(app, 'tsconfig.bad.json'), JSON.stringify({ extends: './tsconfig.json', files: ['bad.ts'] }));
  const bad = run(process.execPath, [TSC, '-p', 'tsconfig.bad.json'], { cwd: app });
  assert.notEqual(bad.code, 0);
  assert.deepEqual(bad.stdout.trim().split('\n').filter((l) => /error TS/.test(l)).map((l) => l.replace(/^.*error (TS\d+).*$/, '$1')), ['TS2322'], bad.stdout);
});

test('npx qvl --version and --help run the compiled CLI', { skip }, (t) => {
  const v = run('npx', ['--no-install', 'qvl', '--version'], { cwd: app });
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), VERSION);
  const bin = path.join(app, 'node_modules', '.bin', 'qvl');
  const t0 = performance.now();
  const help = run(bin, ['--help'], { cwd: app });
  t.diagnostic(`qvl --help: ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage: qvl/);
});

test('qvl serve from the package: the inference and preparation workers start from dist/ and answer', { skip }, async () => {
  assert.ok(fs.existsSync(installed), 'the package is not installed');
  const p = spawn(path.join(app, 'node_modules', '.bin', 'qvl'), ['serve', '--port', '0', '--served-model-name', 'demo'], { cwd: app });
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" line: ${stderr}`)), 60_000);
      p.stderr.on('data', () => {
        const m = /listening on (http:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      p.on('exit', (code) => reject(new Error(`qvl serve exited (${code}): ${stderr}`)));
    });
    for (let i = 0; (await fetch(`${url}/health`)).status !== 200; i++) {
      assert.ok(i < 600, `the model did not load: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    const body = (await r.json()) as { usage: { completion_tokens: number } };
    assert.ok(body.usage.completion_tokens > 0);
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('close', r));
  }
});

test('with no prebuilt binary and no compiler the install still succeeds, and qvl says it runs the TypeScript backend', { skip }, () => {
  assert.ok(fs.existsSync(installed), 'the package is not installed');
  fs.rmSync(path.join(installed, 'prebuilds'), { recursive: true, force: true });
  const rebuild = run('npm', ['rebuild', 'qvl', '--foreground-scripts'], { cwd: app, env: { CXX: 'false', CC: 'false' } });
  assert.equal(rebuild.code, 0, rebuild.stderr);
  assert.match(rebuild.stdout + rebuild.stderr, /building it failed .*TypeScript backend/);
  const r = run(process.execPath, ['app.mjs'], { cwd: app });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Red\./);
  assert.equal((JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { backend: string }).backend, 'ts');
  const notices = r.stderr.split('\n').filter((l) => /TypeScript backend/.test(l));
  assert.equal(notices.length, 1, r.stderr);
  assert.match(notices[0]!, /no prebuilt native addon for .* building it from source at install failed/);
  fs.rmSync(scratch, { recursive: true, force: true });
});
