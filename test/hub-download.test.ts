import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { hfHubCacheDir, repoFolderName } from '../src/hub/cache-layout.ts';
import { resolveModel, type DownloadProgress } from '../src/hub/resolve-model.ts';
import { type FakeFile, type FakeHub, gitSha1, sha256, startFakeHub } from './hub-fake-server.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const REPO = 'qvl-test/Tiny-Qwen3-VL';
const COMMIT = 'a'.repeat(8) + '0123456789abcdef0123456789abcdef';
const TOKEN = 'hf_test_secret_token_value';

const small = (name: string): FakeFile => ({ data: readFileSync(path.join(TINY, name)), lfs: false });
const FILES: Record<string, FakeFile> = {
  'config.json': small('config.json'),
  'generation_config.json': small('generation_config.json'),
  'preprocessor_config.json': small('preprocessor_config.json'),
  'video_preprocessor_config.json': small('video_preprocessor_config.json'),
  'tokenizer_config.json': small('tokenizer_config.json'),
  'chat_template.json': small('chat_template.json'),
  'model.safetensors': { data: readFileSync(path.join(TINY, 'model.safetensors')), lfs: true },
  'README.md': { data: Buffer.from('# not needed\n'), lfs: false },
  'onnx/model.onnx': { data: Buffer.from('not needed either'), lfs: true },
};
const WANTED = Object.keys(FILES).filter((f) => f !== 'README.md' && !f.startsWith('onnx/'));
const WEIGHTS = FILES['model.safetensors']!.data;

let hub: FakeHub;
let gated: FakeHub;
before(async () => {
  hub = await startFakeHub({ repoId: REPO, commit: COMMIT, files: FILES });
  gated = await startFakeHub({ repoId: REPO, commit: COMMIT, files: FILES, token: TOKEN });
});
after(async () => {
  await hub.close();
  await gated.close();
});

const freshCache = () => mkdtempSync(path.join(tmpdir(), 'qvl-hub-'));
const quiet = { retries: 0, connectTimeoutMs: 5000, readTimeoutMs: 5000 };

test('downloads the model files into the Hugging Face cache layout', async () => {
  const cacheDir = freshCache();
  const seen: DownloadProgress[] = [];
  const r = await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, onProgress: (p) => seen.push({ ...p }) });
  const root = path.join(cacheDir, `models--qvl-test--Tiny-Qwen3-VL`);
  assert.equal(r.path, path.join(root, 'snapshots', COMMIT));
  assert.equal(r.from, 'download');
  assert.deepEqual([...r.downloaded].sort(), [...WANTED].sort());
  assert.equal(readFileSync(path.join(root, 'refs', 'main'), 'utf8'), COMMIT);
  // blobs are named by sha256 (LFS) or git sha1; snapshot entries are relative links to them
  const blobs = readdirSync(path.join(root, 'blobs')).sort();
  assert.deepEqual(blobs, WANTED.map((f) => (FILES[f]!.lfs ? sha256(FILES[f]!.data) : gitSha1(FILES[f]!.data))).sort());
  for (const f of WANTED) {
    const link = path.join(r.path, f);
    assert.ok(lstatSync(link).isSymbolicLink(), f);
    assert.ok(!path.isAbsolute(readlinkSync(link)));
    assert.match(readlinkSync(link), /^\.\.\/\.\.\/blobs\/[0-9a-f]+$/);
    assert.deepEqual(readFileSync(link), FILES[f]!.data, f);
  }
  assert.ok(!existsSync(path.join(r.path, 'README.md')));
  assert.ok(!existsSync(path.join(r.path, 'onnx')));
  // progress: byte counts only grow, and end at the total
  const total = WANTED.reduce((a, f) => a + FILES[f]!.data.length, 0);
  const last = seen[seen.length - 1]!;
  assert.deepEqual([last.bytesDone, last.bytesTotal, last.filesDone, last.filesTotal], [total, total, WANTED.length, WANTED.length]);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone);
  // a second call finds everything cached and downloads nothing
  const again = await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {} });
  assert.deepEqual([again.from, again.downloaded.length], ['cache', 0]);
});

test('an interrupted download resumes from the partial file with a Range request', async () => {
  const cacheDir = freshCache();
  const cut = 7_000_000;
  hub.cutNext.set('model.safetensors', cut);
  await assert.rejects(resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, ...quiet }), (e) => {
    assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
    assert.match(e.message, /model\.safetensors/);
    return true;
  });
  const blob = path.join(cacheDir, repoFolderName(REPO), 'blobs', sha256(WEIGHTS));
  // what arrived before the cut stays on disk (the last bytes in flight may be lost with the socket)
  const partial = statSync(`${blob}.incomplete`).size;
  assert.ok(partial > 0 && partial <= cut, `partial ${partial}`);
  const mark = hub.requests.length;
  const r = await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, ...quiet });
  const cdn = hub.requests.slice(mark).filter((q) => q.path.startsWith('/cdn/'));
  assert.deepEqual(cdn.map((q) => q.range), [`bytes=${partial}-`]);
  assert.deepEqual(readFileSync(path.join(r.path, 'model.safetensors')), WEIGHTS);
  assert.ok(!existsSync(`${blob}.incomplete`));

  // with retries (the default) one call gets over a dropped connection by itself
  const other = freshCache();
  hub.cutNext.set('model.safetensors', 1_000_000);
  const r2 = await resolveModel(REPO, { cacheDir: other, endpoint: hub.endpoint, env: {} });
  assert.deepEqual(readFileSync(path.join(r2.path, 'model.safetensors')), WEIGHTS);
});

test('a corrupted file is caught by its hash and not kept', async () => {
  const cacheDir = freshCache();
  for (const name of ['tokenizer_config.json', 'model.safetensors']) {
    hub.corrupt.add(name);
    try {
      await assert.rejects(resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, ...quiet }), (e) => {
        assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
        assert.match(e.message, new RegExp(`${name.replace('.', '\\.')}: corrupted download, (git-sha1|sha256) is [0-9a-f]+ but the hub lists`));
        return true;
      });
    } finally {
      hub.corrupt.delete(name);
    }
    const etag = FILES[name]!.lfs ? sha256(FILES[name]!.data) : gitSha1(FILES[name]!.data);
    const blob = path.join(cacheDir, repoFolderName(REPO), 'blobs', etag);
    assert.ok(!existsSync(blob) && !existsSync(`${blob}.incomplete`));
  }
});

test('a gated repository: 401 without a token, works with HF_TOKEN, which never reaches the CDN', async () => {
  const cacheDir = freshCache();
  await assert.rejects(resolveModel(REPO, { cacheDir, endpoint: gated.endpoint, env: {}, ...quiet }), (e) => {
    assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
    assert.match(e.message, /HTTP 401, the repository is gated or private: set HF_TOKEN/);
    return true;
  });
  await assert.rejects(resolveModel(REPO, { cacheDir, endpoint: gated.endpoint, env: { HF_TOKEN: 'wrong' }, ...quiet }), (e) => {
    assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
    assert.match(e.message, /the token was refused/);
    assert.ok(!e.message.includes('wrong') && !JSON.stringify(e.detail).includes('wrong'));
    return true;
  });
  const mark = gated.requests.length;
  const r = await resolveModel(REPO, { cacheDir, endpoint: gated.endpoint, env: { HF_TOKEN: TOKEN } });
  assert.deepEqual(readFileSync(path.join(r.path, 'model.safetensors')), WEIGHTS);
  const seen = gated.requests.slice(mark);
  for (const q of seen) {
    if (q.path.startsWith('/cdn/')) {
      assert.equal(q.authorization, undefined, 'token sent to the CDN host');
      assert.match(q.host, /^\[::1\]/);
    } else assert.equal(q.authorization, `Bearer ${TOKEN}`);
  }
  // the token file under HF_HOME is read too (as huggingface_hub does)
  const home = freshCache();
  writeFileSync(path.join(home, 'token'), `${TOKEN}\n`);
  const r2 = await resolveModel(REPO, { endpoint: gated.endpoint, env: { HF_HOME: home } });
  assert.equal(r2.path, path.join(home, 'hub', repoFolderName(REPO), 'snapshots', COMMIT));
});

test('offline: a cached snapshot is used with no request at all; a missing one is an error', async () => {
  const cacheDir = freshCache();
  await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {} });
  const mark = hub.requests.length;
  const r = await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: { HF_HUB_OFFLINE: '1' } });
  assert.deepEqual([r.from, r.commit], ['cache', COMMIT]);
  // a pinned commit whose snapshot is complete needs no network either, offline or not
  const pinned = await resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, revision: COMMIT });
  assert.equal(pinned.path, r.path);
  assert.equal(hub.requests.length, mark);
  await assert.rejects(resolveModel(REPO, { cacheDir: freshCache(), endpoint: hub.endpoint, offline: true }), (e) => {
    assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
    assert.match(e.message, /offline mode, and the cache at .* has no complete snapshot/);
    return true;
  });
  assert.equal(hub.requests.length, mark);
});

test('HF_ENDPOINT and HF_HUB_CACHE come from the environment; a local folder wins', async () => {
  const cacheDir = freshCache();
  const r = await resolveModel(REPO, { env: { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cacheDir } });
  assert.ok(r.path.startsWith(cacheDir));
  assert.equal(hfHubCacheDir({ HF_HOME: '/x/hf' }), '/x/hf/hub');
  assert.equal(hfHubCacheDir({ HUGGINGFACE_HUB_CACHE: '/y' }), '/y');
  assert.equal(hfHubCacheDir({ XDG_CACHE_HOME: '/z' }), '/z/huggingface/hub');
  const local = await resolveModel(TINY);
  assert.deepEqual([local.path, local.from], [TINY, 'local']);
  await assert.rejects(resolveModel('definitely/not/a/model', { env: {} }), (e) => isQvlError(e, 'FILE_NOT_FOUND') && /not a model id/.test(e.message));
  await assert.rejects(resolveModel(REPO, { cacheDir, endpoint: hub.endpoint, env: {}, revision: 'v9', ...quiet }), (e) => {
    assert.ok(isQvlError(e, 'DOWNLOAD_FAILED'));
    assert.match(e.message, /HTTP 404, RevisionNotFound/);
    return true;
  });
});

test('ModelScope: its listing and file API, verified by sha256, cached in its own root', async () => {
  const cacheDir = freshCache();
  const mark = hub.requests.length;
  const r = await resolveModel(`modelscope:${REPO}`, { env: { MODELSCOPE_ENDPOINT: hub.endpoint, MODELSCOPE_CACHE: cacheDir } });
  assert.equal(r.source, 'modelscope');
  assert.equal(r.path, path.join(cacheDir, repoFolderName(REPO), 'snapshots', 'master'));
  assert.deepEqual(readFileSync(path.join(r.path, 'model.safetensors')), WEIGHTS);
  assert.deepEqual(readFileSync(path.join(r.path, 'config.json')), FILES['config.json']!.data);
  const paths = hub.requests.slice(mark).map((q) => q.path);
  assert.ok(paths.some((p) => p.startsWith(`/api/v1/models/${REPO}/repo/files?Revision=master&Recursive=true`)));
  assert.ok(paths.every((p) => p.startsWith('/api/v1/models/')));
  hub.corrupt.add('config.json');
  try {
    await assert.rejects(resolveModel(`modelscope:${REPO}`, { env: { MODELSCOPE_ENDPOINT: hub.endpoint, MODELSCOPE_CACHE: freshCache() }, ...quiet }), (e) =>
      isQvlError(e, 'DOWNLOAD_FAILED') && /corrupted download, sha256/.test(e.message),
    );
  } finally {
    hub.corrupt.delete('config.json');
  }
});
