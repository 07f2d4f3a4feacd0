import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isQvlError, type QvlErrorCode } from '../src/errors.ts';
import { decodeBase64Strict, parseDataUri } from '../src/media/base64.ts';
import { forbiddenAddressReason } from '../src/media/ip-policy.ts';
import { fetchToFile } from '../src/media/fetch-url.ts';
import { resolveLimits } from '../src/media/source-options.ts';
import { classifySource, loadMediaBytes, loadMediaFile } from '../src/media/source.ts';

const PNG = readFileSync(path.join(import.meta.dirname, 'fixtures', 'media', 'rgba.png'));

function rejectsWith(p: Promise<unknown>, code: QvlErrorCode, message: RegExp) {
  return assert.rejects(p, (e) => {
    assert.ok(isQvlError(e, code), `expected ${code}, got ${String(e)}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

// ---- a local HTTP server standing in for the web ----
let server: http.Server;
let base = '';
const hits: string[] = [];
before(async () => {
  server = http.createServer((req, res) => {
    hits.push(req.url!);
    const u = new URL(req.url!, 'http://x');
    switch (u.pathname) {
      case '/img.png':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': PNG.length });
        return res.end(PNG);
      case '/octet':
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        return res.end(PNG);
      case '/html':
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>not an image</html>');
      case '/missing':
        res.writeHead(404);
        return res.end();
      case '/big':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': 10_000_000 });
        return res.end();
      case '/big-chunked': {
        // no Content-Length: the cap must be enforced while streaming
        res.writeHead(200, { 'content-type': 'image/png' });
        let n = 0;
        const pump = () => {
          while (n < 50 && res.write(Buffer.alloc(65536))) n++;
          if (n < 50) res.once('drain', pump);
          else res.end();
        };
        return pump();
      }
      case '/redirect':
        res.writeHead(302, { location: '/img.png' });
        return res.end();
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        return res.end();
      case '/to-private':
        res.writeHead(302, { location: u.searchParams.get('to')! });
        return res.end();
      case '/slow':
        res.writeHead(200, { 'content-type': 'image/png' });
        res.write(PNG.subarray(0, 10)); // then silence
        return;
      default:
        res.writeHead(500);
        res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const open = { allowPrivateNetwork: true };

test('http URL: bytes and content type, also through a redirect', async () => {
  const a = await loadMediaBytes(`${base}/img.png`, 'image', open);
  assert.deepEqual(Buffer.from(a.bytes), PNG);
  assert.equal(a.mimeType, 'image/png');
  const b = await loadMediaBytes(`${base}/redirect`, 'image', open);
  assert.deepEqual(Buffer.from(b.bytes), PNG);
  const c = await loadMediaBytes(`${base}/octet`, 'image', open);
  assert.equal(c.bytes.length, PNG.length);
});

test('http URL: loopback is refused without permission, before any request is sent', async () => {
  const before = hits.length;
  await rejectsWith(loadMediaBytes(`${base}/img.png`, 'image'), 'MEDIA_FORBIDDEN', /127\.0\.0\.1.*not allowed/);
  await rejectsWith(loadMediaBytes(`http://localhost:1/x.png`, 'image'), 'MEDIA_FORBIDDEN', /localhost resolves to/);
  await rejectsWith(loadMediaBytes(`http://[::ffff:127.0.0.1]:1/x.png`, 'image'), 'MEDIA_FORBIDDEN', /embeds 127\.0\.0\.1/);
  await rejectsWith(loadMediaBytes(`http://169.254.169.254/latest/meta-data`, 'image'), 'MEDIA_FORBIDDEN', /169\.254\.169\.254/);
  assert.equal(hits.length, before);
});

test('http URL: every redirect hop is checked again', async () => {
  // 127.0.0.1 is let through by name; the redirect then points at ::1 and 10.0.0.1, which are not.
  const only = { allowedAddresses: ['127.0.0.1'] };
  assert.equal((await loadMediaBytes(`${base}/img.png`, 'image', only)).bytes.length, PNG.length);
  const n = hits.length;
  await rejectsWith(loadMediaBytes(`${base}/to-private?to=${encodeURIComponent('http://[::1]:9/secret')}`, 'image', only), 'MEDIA_FORBIDDEN', /::1 .*not allowed/);
  await rejectsWith(loadMediaBytes(`${base}/to-private?to=${encodeURIComponent('http://10.0.0.1/x')}`, 'image', only), 'MEDIA_FORBIDDEN', /10\.0\.0\.1/);
  assert.equal(hits.length, n + 2); // only the first hops reached the server
  await rejectsWith(
    loadMediaBytes(`${base}/to-private?to=${encodeURIComponent('file:///etc/passwd')}`, 'image', open),
    'MEDIA_FORBIDDEN',
    /only http and https/,
  );
});

test('http URL: status, content type, size cap, redirect limit and read time-out are enforced', async () => {
  await rejectsWith(loadMediaBytes(`${base}/missing`, 'image', open), 'MEDIA_SOURCE', /HTTP 404/);
  await rejectsWith(loadMediaBytes(`${base}/html`, 'image', open), 'MEDIA_SOURCE', /Content-Type text\/html/);
  await rejectsWith(loadMediaBytes(`${base}/big`, 'image', { ...open, maxBytes: 1_000_000 }), 'MEDIA_TOO_LARGE', /10000000 bytes, over the limit of 1000000/);
  await rejectsWith(
    loadMediaBytes(`${base}/big-chunked`, 'image', { ...open, maxBytes: 1_000_000 }),
    'MEDIA_TOO_LARGE',
    /more than \d+ bytes, over the limit of 1000000/,
  );
  await rejectsWith(loadMediaBytes(`${base}/loop`, 'image', { ...open, maxRedirects: 3 }), 'MEDIA_SOURCE', /more than 3 redirects/);
  await rejectsWith(loadMediaBytes(`${base}/slow`, 'image', { ...open, readTimeoutMs: 150 }), 'MEDIA_SOURCE', /no data for 150 ms/);
  await rejectsWith(
    loadMediaBytes(`${base}/slow`, 'image', { ...open, readTimeoutMs: 5000, totalTimeoutMs: 200 }),
    'MEDIA_SOURCE',
    /did not finish within 200 ms/,
  );
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  await rejectsWith(loadMediaBytes(`${base}/slow`, 'image', { ...open, signal: ac.signal }), 'ABORTED', /aborted/);
});

test('http URL to a file: the download lands in a temporary file that cleanup removes', async () => {
  const f = await loadMediaFile(`${base}/img.png`, 'video', { ...open, contentTypes: ['image/'] });
  assert.deepEqual(readFileSync(f.path), PNG);
  await f.cleanup();
  assert.throws(() => readFileSync(f.path));
});

// A refused or failed download must not open its file: the caller removes the file's directory
// as soon as the refusal arrives, and an open still in flight then failed with ENOENT, an error
// naming the temporary path that reached the request (the server answered 500 with it).
test('a download into a file opens it only for an accepted answer, and closes it before a refusal is reported', async () => {
  const stray: unknown[] = [];
  const onStray = (e: unknown) => void stray.push(e);
  process.on('unhandledRejection', onStray);
  process.on('uncaughtException', onStray);
  try {
    const gone = path.join(tmpdir(), `qvl-no-such-dir-${process.pid}`, 'input');
    const limits = (extra: object) => resolveLimits('video', { contentTypes: ['image/'], ...extra });
    await rejectsWith(fetchToFile('https://[::1]:1/doc.pdf', gone, { limits: limits({}) }), 'MEDIA_FORBIDDEN', /loopback/);
    await rejectsWith(fetchToFile(`${base}/missing`, gone, { limits: limits({ allowPrivateNetwork: true }) }), 'MEDIA_SOURCE', /HTTP 404/);
    await rejectsWith(fetchToFile(`${base}/html`, gone, { limits: limits({ allowPrivateNetwork: true }) }), 'MEDIA_SOURCE', /Content-Type text\/html/);
    // opened, then abandoned: the file is closed when the error arrives, its directory removable
    const dir = mkdtempSync(path.join(tmpdir(), 'qvl-fetch-'));
    await rejectsWith(
      fetchToFile(`${base}/big-chunked`, path.join(dir, 'input'), { limits: limits({ allowPrivateNetwork: true, maxBytes: 200_000 }) }),
      'MEDIA_TOO_LARGE',
      /over the limit of 200000/,
    );
    rmSync(dir, { recursive: true });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(stray.map(String), [], 'nothing surfaced outside the promise');
  } finally {
    process.off('unhandledRejection', onStray);
    process.off('uncaughtException', onStray);
  }
});

test('unsupported URL schemes are refused', () => {
  assert.throws(() => classifySource('ftp://example.com/a.png'), (e) => isQvlError(e, 'MEDIA_FORBIDDEN'));
});

test('local paths and file:// URLs honour allowedLocalDirs after resolving symlinks and ..', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'qvl-src-'));
  const allowed = path.join(root, 'allowed');
  const outside = path.join(root, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  writeFileSync(path.join(allowed, 'a.png'), PNG);
  writeFileSync(path.join(outside, 'secret.png'), PNG);
  symlinkSync(path.join(outside, 'secret.png'), path.join(allowed, 'link.png'));

  // plain path, no restriction: fine
  assert.equal((await loadMediaBytes(path.join(outside, 'secret.png'), 'image')).bytes.length, PNG.length);
  // file:// URL without an allow-list: refused
  await rejectsWith(loadMediaBytes(pathToFileURL(path.join(allowed, 'a.png')).href, 'image'), 'MEDIA_FORBIDDEN', /file:\/\/ URLs are not allowed/);
  const opts = { allowedLocalDirs: [allowed] };
  assert.equal((await loadMediaBytes(pathToFileURL(path.join(allowed, 'a.png')).href, 'image', opts)).bytes.length, PNG.length);
  assert.equal((await loadMediaBytes(path.join(allowed, 'a.png'), 'image', opts)).bytes.length, PNG.length);
  await rejectsWith(loadMediaBytes(path.join(allowed, '..', 'outside', 'secret.png'), 'image', opts), 'MEDIA_FORBIDDEN', /outside the allowed directories/);
  await rejectsWith(loadMediaBytes(pathToFileURL(path.join(allowed, 'link.png')).href, 'image', opts), 'MEDIA_FORBIDDEN', /link\.png: outside the allowed directories$/);
  await rejectsWith(loadMediaBytes(path.join(allowed, 'a.png'), 'image', { allowedLocalDirs: [] }), 'MEDIA_FORBIDDEN', /reading local files is not allowed/);
  await rejectsWith(loadMediaBytes(path.join(allowed, 'nope.png'), 'image'), 'MEDIA_SOURCE', /no such file/);
  await rejectsWith(loadMediaBytes(path.join(allowed, 'a.png'), 'image', { maxBytes: 100 }), 'MEDIA_TOO_LARGE', /over the limit of 100/);
});

test('with allowedLocalDirs, answers never show real paths nor tell whether a file outside exists', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'qvl-src-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const allowed = path.join(root, 'allowed');
  const outside = path.join(root, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'secret.png'), PNG);
  symlinkSync(path.join(outside, 'secret.png'), path.join(allowed, 'link.png'));
  symlinkSync(path.join(outside, 'missing.png'), path.join(allowed, 'dangling.png'));
  symlinkSync(outside, path.join(allowed, 'dir-link'));
  const opts = { allowedLocalDirs: [allowed] };
  const message = async (source: string) => {
    try {
      await loadMediaBytes(source, 'image', opts);
    } catch (e) {
      assert.ok(isQvlError(e), String(e));
      return `${e.code} ${e.message.replace(source, '<source>')}`;
    }
    assert.fail(`${source} was read`);
  };
  const forbidden = 'MEDIA_FORBIDDEN <source>: outside the allowed directories';
  const sources = [
    path.join(outside, 'secret.png'),
    path.join(outside, 'missing.png'),
    path.join(allowed, '..', 'outside', 'secret.png'),
    path.join(allowed, '..', 'outside', 'missing.png'),
    pathToFileURL(path.join(outside, 'secret.png')).href,
    pathToFileURL(path.join(outside, 'missing.png')).href,
    path.join(allowed, 'link.png'),
    path.join(allowed, 'dangling.png'),
    path.join(allowed, 'dir-link', 'secret.png'),
    path.join(allowed, 'dir-link', 'missing.png'),
    'file:///proc/self/environ',
    '/etc/shadow.bak',
    '/etc/no-such.conf',
  ];
  for (const s of sources) {
    const m = await message(s);
    assert.equal(m, forbidden, s);
    assert.ok(!m.includes(outside) && !m.includes('secret') && !m.includes(String(process.pid)), m);
  }
  // "no such file" only inside the allowed directories
  assert.equal(await message(path.join(allowed, 'nope.png')), 'MEDIA_SOURCE <source>: no such file');
  // a dot-free string is looked up as a file only inside them; elsewhere it is Base64 whether or not it exists
  assert.ok(!(await message('/proc/self/environ')).includes(String(process.pid)));
  assert.equal(await message('/etc/hosts'), await message('/etc/hostz'));
  assert.equal(await message(path.join(outside, 'secretfile')), await message(path.join(outside, 'secretfilx')));
});

test('data URIs and bare Base64 decode exactly; malformed ones are errors', async () => {
  const b64 = PNG.toString('base64');
  assert.deepEqual(Buffer.from((await loadMediaBytes(`data:image/png;base64,${b64}`, 'image')).bytes), PNG);
  assert.equal((await loadMediaBytes(`data:image/png;base64,${b64}`, 'image')).mimeType, 'image/png');
  assert.deepEqual(Buffer.from((await loadMediaBytes(b64, 'image')).bytes), PNG);
  // line-wrapped (MIME) Base64 is fine
  assert.deepEqual(Buffer.from((await loadMediaBytes(b64.replace(/(.{76})/g, '$1\n'), 'image')).bytes), PNG);
  assert.deepEqual(Buffer.from(parseDataUri('data:,a%20b%FF').bytes), Buffer.from([0x61, 0x20, 0x62, 0xff]));

  const bad = b64.slice(0, 100) + '!' + b64.slice(101);
  await rejectsWith(loadMediaBytes(`data:image/png;base64,${bad}`, 'image'), 'MEDIA_SOURCE', /unexpected character "!" at offset 100/);
  assert.throws(() => decodeBase64Strict('QUJD='), (e) => isQvlError(e, 'MEDIA_SOURCE') && /padding/.test((e as Error).message));
  assert.throws(() => decodeBase64Strict('QUJDR'), (e) => isQvlError(e, 'MEDIA_SOURCE') && /dangling/.test((e as Error).message));
  assert.throws(() => decodeBase64Strict('QUI='.replace('I', 'J')), (e) => isQvlError(e, 'MEDIA_SOURCE') && /leftover bits/.test((e as Error).message));
  assert.throws(() => decodeBase64Strict('ab+_'), (e) => isQvlError(e, 'MEDIA_SOURCE') && /mix/.test((e as Error).message));
  assert.deepEqual(Buffer.from(decodeBase64Strict('-_8')), Buffer.from([0xfb, 0xff]));
  assert.throws(() => parseDataUri('data:image/png;base64'), (e) => isQvlError(e, 'MEDIA_SOURCE'));
  assert.throws(() => parseDataUri('data:,%G1'), (e) => isQvlError(e, 'MEDIA_SOURCE') && /percent escape/.test((e as Error).message));
  await rejectsWith(loadMediaBytes(`data:image/png;base64,${b64}`, 'image', { maxBytes: 1000 }), 'MEDIA_TOO_LARGE', /over the limit of 1000/);
  await rejectsWith(loadMediaBytes(b64, 'image', { maxBytes: 1000 }), 'MEDIA_TOO_LARGE', /over the limit of 1000/);
  await rejectsWith(loadMediaBytes(new Uint8Array(2000), 'image', { maxBytes: 1000 }), 'MEDIA_TOO_LARGE', /2000 bytes/);
});

test('the IP policy allows public unicast only, for every spelling of an address', () => {
  const refused: [string, RegExp][] = [
    ['::ffff:0:7f00:1', /IPv4-translated/], // RFC 6145 ::ffff:0:0:0/96
    ['::ffff:0:127.0.0.1', /IPv4-translated/],
    ['64:ff9b:1::7f00:1', /local-use NAT64/], // RFC 8215
    ['64:ff9b:1:ffff::808:808', /local-use NAT64/], // even with a public IPv4 inside: the layout is the site's
    ['::ffff:127.0.0.1', /embeds 127\.0\.0\.1, a loopback/],
    ['::FFFF:7F00:1', /embeds 127\.0\.0\.1/],
    ['0:0:0:0:0:ffff:a00:1', /embeds 10\.0\.0\.1, a private/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['::7f00:1', /IPv4-compatible/],
    ['::8.8.8.8', /IPv4-compatible/],
    ['64:ff9b::7f00:1', /embeds 127\.0\.0\.1/],
    ['64:ff9b::169.254.169.254', /embeds 169\.254\.169\.254, a link-local/],
    ['2002:7f00:1::', /embeds 127\.0\.0\.1/],
    ['2002:a9fe:a9fe::1', /embeds 169\.254\.169\.254/],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', /Teredo/],
    ['fe80::1%eth0', /scoped/],
    ['fe80::1', /link-local/],
    ['2606:4700:4700::1111%2', /scoped/],
    ['::1', /loopback/],
    ['0:0:0:0:0:0:0:1', /loopback/],
    ['::', /unspecified/],
    ['fc00::1', /unique-local/],
    ['fd00:ec2::254', /unique-local/],
    ['fec0::1', /site-local/],
    ['ff02::1', /multicast/],
    ['100::1', /discard/],
    ['2001:db8::1', /documentation/],
    ['3fff::1', /documentation/],
    ['4000::1', /outside the global unicast range/],
    ['0.0.0.0', /unspecified/],
    ['127.0.0.1', /loopback/],
    ['127.255.255.254', /loopback/],
    ['10.1.2.3', /private/],
    ['172.31.255.255', /private/],
    ['192.168.1.1', /private/],
    ['100.64.1.1', /carrier-grade NAT/],
    ['169.254.169.254', /link-local/],
    ['192.0.0.170', /reserved/],
    ['192.0.2.1', /documentation/],
    ['198.18.0.1', /reserved/],
    ['224.0.0.1', /multicast/],
    ['240.0.0.1', /reserved/],
    ['255.255.255.255', /broadcast/],
    // spellings DNS never returns are not addresses at all
    ['127.1', /not an IP address/],
    ['0x7f.0.0.1', /not an IP address/],
    ['2130706433', /not an IP address/],
    ['localhost', /not an IP address/],
  ];
  for (const [a, why] of refused) {
    const r = forbiddenAddressReason(a);
    assert.ok(r !== undefined, `${a} was allowed`);
    assert.match(r, why, a);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '2001:4860:4860::8888', '::ffff:8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::1']) {
    assert.equal(forbiddenAddressReason(a), undefined, a);
  }
});

test('the IP policy covers IPv4, IPv6 and addresses that embed IPv4', () => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'fd12::1', '::ffff:10.0.0.1', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe', '2002:c0a8:101::1', 'fe80::1%eth0']) {
    assert.notEqual(forbiddenAddressReason(a), undefined, a);
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) assert.equal(forbiddenAddressReason(a), undefined, a);
});
