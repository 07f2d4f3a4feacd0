/**
 * Attacks on `qvl serve`'s media handling, through the real server (in-process, tiny model):
 * videos that make ffmpeg read other local files, a long GIF, error messages that probe the file
 * system, and IPv6 spellings of loopback. Every answer must be a 4xx that names the problem.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FFMPEG, ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { WorkerEngine } from '../src/server/engine.ts';
import { startServer, type RunningServer } from '../src/server/serve.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const PNG = readFileSync(path.join(TINY, 'image_b.png'));
const noFfmpeg = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';

// root/allowed is the one folder the server may read; root/outside holds what it must not
const root = mkdtempSync(path.join(tmpdir(), 'qvl-sec-'));
const allowed = path.join(root, 'allowed');
const outside = path.join(root, 'outside');
mkdirSync(allowed);
mkdirSync(outside);
writeFileSync(path.join(outside, 'secret.png'), PNG);
writeFileSync(path.join(allowed, 'ok.png'), PNG);
symlinkSync(path.join(outside, 'secret.png'), path.join(allowed, 'link.png'));
symlinkSync(outside, path.join(allowed, 'outside-dir'));

let server: RunningServer;
let engine: WorkerEngine;
let host: http.Server;
let hostUrl = '';
const served = new Map<string, { type: string; body: Buffer }>();

before(async () => {
  host = http.createServer((req, res) => {
    const f = served.get(req.url ?? '');
    if (!f) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': f.body.length }).end(f.body);
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  hostUrl = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;
  engine = new WorkerEngine(TINY, { backend: 'ts' });
  server = await startServer({
    engine,
    modelDir: TINY,
    modelNames: ['tiny'],
    port: 0,
    limits: {
      maxQueue: 4,
      maxContext: 4096,
      maxBodyBytes: 8 * 1024 * 1024,
      defaultMaxTokens: 1,
      // the media host is on loopback: that one spelling is allowed, no other private address is
      media: { allowedAddresses: ['127.0.0.1'], allowedLocalDirs: [allowed] },
    },
  });
  await engine.loaded;
});

after(async () => {
  await server?.close();
  await new Promise((r) => host?.close(r));
  rmSync(root, { recursive: true, force: true });
});

interface Answer {
  status: number;
  text: string;
  json: { error?: { message: string; code: string | null }; prompt_tokens?: number; usage?: { prompt_tokens: number } };
}

async function post(route: string, body: unknown): Promise<Answer> {
  const r = await fetch(`${server.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, text, json: JSON.parse(text) };
}

const videoMessages = (url: string) => [{ role: 'user', content: [{ type: 'video_url', video_url: { url } }, { type: 'text', text: 'Describe.' }] }];
const imageMessages = (url: string) => [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'Describe.' }] }];

/** The same messages to /v1/tokenize and /v1/chat/completions: both must refuse with a 4xx. */
async function bothRefuse(messages: unknown, code: string, message: RegExp): Promise<Answer[]> {
  const answers = [await post('/v1/tokenize', { model: 'tiny', messages }), await post('/v1/chat/completions', { model: 'tiny', messages, max_tokens: 1 })];
  for (const [k, a] of answers.entries()) {
    const route = k === 0 ? 'tokenize' : 'chat';
    assert.ok(a.status >= 400 && a.status < 500, `${route}: ${a.status} ${a.text}`);
    assert.equal(a.json.error?.code, code, `${route}: ${a.text}`);
    assert.match(a.json.error!.message, message, route);
  }
  return answers;
}

const ffmpeg = (args: string[]) => {
  const r = spawnSync(FFMPEG, ['-v', 'error', '-y', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
};
const dataUri = (bytes: Buffer | string, mime: string) => `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;

test('a playlist or concat list cannot make ffmpeg read files outside the allowed folders', { skip: noFfmpeg }, async () => {
  // a real clip outside every allowed folder, 37 frames at 10 fps (3.7 s)
  const ts = path.join(outside, 'clip.ts');
  const mp4 = path.join(outside, 'clip.mp4');
  for (const f of [ts, mp4]) ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10', '-frames:v', '37', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', f]);
  // what a successful probe would have told: sizes, duration, frame count, timestamps
  const secrets = [String(statSync(ts).size), String(statSync(mp4).size), '3.6', '3.7', '"frames"', '"timestamps"'];
  // data URIs are written to a temporary folder beside `outside`, so a relative path reaches it too
  const relative = path.relative(path.join(tmpdir(), 'qvl-media-x'), mp4);
  const hls = (segment: string) => `#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:3.7,\n${segment}\n#EXT-X-ENDLIST\n`;
  const playlists = [pathToFileURL(ts).href, ts, mp4, relative].map(hls);
  const concat = `ffconcat version 1.0\nfile '${mp4}'\nfile '${relative}'\n`;
  writeFileSync(path.join(allowed, 'list.m3u8'), playlists[0]!);
  served.set('/list.m3u8', { type: 'video/mp4', body: Buffer.from(playlists[1]!) });

  const sources = [
    ...playlists.map((p) => dataUri(p, 'video/mp4')),
    dataUri(playlists[0]!, 'application/vnd.apple.mpegurl'),
    dataUri(concat, 'video/mp4'),
    `${hostUrl}/list.m3u8`, // downloaded first, then probed
    pathToFileURL(path.join(allowed, 'list.m3u8')).href, // a local file inside the allowed folder
    path.join(allowed, 'list.m3u8'),
  ];
  for (const src of sources) {
    for (const a of await bothRefuse(videoMessages(src), 'video_invalid', /playlists and concat lists are not accepted \((the input is )?(hls|concat)/)) {
      for (const s of secrets) assert.ok(!a.text.includes(s), `${src.slice(0, 60)}: the answer reveals ${s}: ${a.text}`);
    }
  }
  // the same clip, given directly, is fine: only the indirection is refused
  const ok = await post('/v1/tokenize', { model: 'tiny', messages: videoMessages(dataUri(readFileSync(mp4), 'video/mp4')) });
  assert.equal(ok.status, 200, ok.text);
});

test('a 3000-frame GIF video: the preview and the real run agree (no "Cannot allocate memory")', { skip: noFfmpeg }, async () => {
  const gif = path.join(root, 'long.gif');
  ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=32x32:rate=25', '-frames:v', '3000', gif]);
  const messages = videoMessages(dataUri(readFileSync(gif), 'video/gif'));
  const cost = await post('/v1/tokenize', { model: 'tiny', messages });
  assert.equal(cost.status, 200, cost.text);
  const run = await post('/v1/chat/completions', { model: 'tiny', messages, max_tokens: 1 });
  assert.equal(run.status, 200, run.text);
  assert.equal(run.json.usage!.prompt_tokens, cost.json.prompt_tokens);
});

test('errors for local paths never show the real path nor tell what exists outside the allowed folder', async () => {
  const forbidden = /^(\S+): outside the allowed directories$/;
  const pairs = [
    // [exists, does not exist]: each pair must get the same answer
    [path.join(outside, 'secret.png'), path.join(outside, 'missing.png')],
    [pathToFileURL(path.join(outside, 'secret.png')).href, pathToFileURL(path.join(outside, 'missing.png')).href],
    [path.join(allowed, '..', 'outside', 'secret.png'), path.join(allowed, '..', 'outside', 'missing.png')],
    [path.join(allowed, 'outside-dir', 'secret.png'), path.join(allowed, 'outside-dir', 'missing.png')],
    ['/etc/passwd.png', '/etc/no-such-file.png'],
    ['file:///proc/self/environ', 'file:///proc/self/no-such-file'],
    ['file:///etc/hosts', 'file:///etc/hostz'],
  ];
  for (const pair of pairs) {
    const texts: string[] = [];
    for (const src of pair) {
      const [cost] = await bothRefuse(imageMessages(src), 'media_forbidden', forbidden);
      assert.equal(forbidden.exec(cost!.json.error!.message)![1], src);
      texts.push(cost!.text.replace(src, '<source>'));
    }
    assert.equal(texts[0], texts[1], `${pair[0]} vs ${pair[1]}`);
  }
  // a symlink inside the allowed folder that leads outside: refused without saying where it leads
  for (const src of [path.join(allowed, 'link.png'), pathToFileURL(path.join(allowed, 'link.png')).href]) {
    for (const a of await bothRefuse(imageMessages(src), 'media_forbidden', forbidden)) assert.ok(!a.text.includes(outside) && !a.text.includes('secret'), a.text);
  }
  const environ = await bothRefuse(imageMessages('file:///proc/self/environ'), 'media_forbidden', forbidden);
  for (const a of environ) assert.ok(!a.text.includes(String(process.pid)), a.text);
  // inside the allowed folder: a missing file is named as such, and a real one is read
  await bothRefuse(imageMessages(path.join(allowed, 'missing.png')), 'media_source', /missing\.png: no such file/);
  const ok = await post('/v1/tokenize', { model: 'tiny', messages: imageMessages(pathToFileURL(path.join(allowed, 'ok.png')).href) });
  assert.equal(ok.status, 200, ok.text);
});

test('IPv6 spellings of loopback and private addresses are refused before any connection', async () => {
  served.set('/x.png', { type: 'image/png', body: PNG });
  const port = (host.address() as AddressInfo).port;
  // 127.0.0.1 itself is allowed by name (the media host), so this works...
  assert.equal((await post('/v1/tokenize', { model: 'tiny', messages: imageMessages(`${hostUrl}/x.png`) })).status, 200);
  // ...but no other spelling of it, nor other private addresses
  for (const h of ['[::ffff:0:7f00:1]', '[64:ff9b:1::7f00:1]', '[::ffff:127.0.0.1]', '[::127.0.0.1]', '[64:ff9b::7f00:1]', '[2002:7f00:1::]', '[::1]', '[fe80::1]', '0.0.0.0', '100.64.1.1', '169.254.169.254']) {
    await bothRefuse(imageMessages(`http://${h}:${port}/x.png`), 'media_forbidden', /not allowed/);
  }
});
