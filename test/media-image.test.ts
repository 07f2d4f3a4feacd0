import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { decodeImage, loadImage, probeImage } from '../src/media/image.ts';
import { isQvlError } from '../src/errors.ts';

const DIR = path.join(import.meta.dirname, 'fixtures', 'media');
// Written by tools/reference/make_media_fixtures.py: Pillow's decode (exif_transpose + convert("RGB")).
const REF = JSON.parse(readFileSync(path.join(DIR, 'pil_reference.json'), 'utf8')) as {
  images: Record<string, { width: number; height: number; rgb: string; pil_mode: string }>;
};

function diff(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

for (const [name, ref] of Object.entries(REF.images)) {
  test(`decodeImage matches Pillow for ${name} (${ref.pil_mode})`, async () => {
    const img = await decodeImage(readFileSync(path.join(DIR, name)), { label: name });
    assert.equal(img.width, ref.width);
    assert.equal(img.height, ref.height);
    assert.equal(img.data.length, ref.width * ref.height * 3);
    const d = diff(img.data, readFileSync(path.join(DIR, ref.rgb)));
    if (name.endsWith('.avif')) {
      // libheif (sharp) and libavif (Pillow) upsample 4:2:0 chroma differently; 4:4:4 files agree within 1.
      assert.ok(d.mean < 8 && d.max <= 96, `avif mean ${d.mean} max ${d.max}`);
    } else {
      assert.deepEqual(d, { max: 0, mean: 0 });
    }
  });
}

test('probeImage reports the size after EXIF rotation without decoding', async () => {
  const h = await probeImage(readFileSync(path.join(DIR, 'exif_orient6.jpg')));
  assert.deepEqual([h.width, h.height, h.orientation, h.format], [24, 40, 6, 'jpeg']);
  const p = await probeImage(readFileSync(path.join(DIR, 'rgba.png')));
  assert.deepEqual([p.width, p.height, p.hasAlpha], [40, 24, true]);
});

test('the first frame of an animated GIF is used', async () => {
  const img = await decodeImage(readFileSync(path.join(DIR, 'two_frames.gif')));
  assert.equal(img.height, 24); // not 48: frames are not stacked
});

/** A PNG whose header claims `w`×`h` pixels but whose data is a few bytes: a decompression bomb's header. */
function bombPng(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(16))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('an image whose header exceeds the pixel limit is refused before decoding', async () => {
  const bomb = bombPng(60000, 60000);
  await assert.rejects(decodeImage(bomb, { label: 'bomb.png' }), (e) => {
    assert.ok(isQvlError(e, 'IMAGE_TOO_LARGE'));
    assert.match(e.message, /bomb\.png: 60000x60000 = 3600000000 pixels, over the limit of 89478485/);
    return true;
  });
  await assert.rejects(decodeImage(readFileSync(path.join(DIR, 'rgb.tiff')), { maxInputPixels: 100 }), (e) =>
    isQvlError(e, 'IMAGE_TOO_LARGE'),
  );
});

test('undecodable and unsupported images give IMAGE_DECODE naming the source', async () => {
  await assert.rejects(decodeImage(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), { label: 'junk.bin' }), (e) => {
    assert.ok(isQvlError(e, 'IMAGE_DECODE'));
    assert.match(e.message, /^junk\.bin: /);
    return true;
  });
  const png = readFileSync(path.join(DIR, 'rgba.png'));
  await assert.rejects(decodeImage(png.subarray(0, png.length - 400), { label: 'cut.png' }), (e) => isQvlError(e, 'IMAGE_DECODE'));
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>');
  await assert.rejects(decodeImage(svg, { label: 'x.svg' }), (e) => {
    assert.ok(isQvlError(e, 'IMAGE_DECODE'));
    assert.match(e.message, /unsupported image format svg/);
    return true;
  });
});

test('loadImage takes paths, data URIs and Base64 alike and passes the pixel budget through', async () => {
  const file = path.join(DIR, 'rgba.png');
  const b64 = readFileSync(file).toString('base64');
  const expected = readFileSync(path.join(DIR, 'rgba.png.pil.rgb'));
  for (const src of [file, `data:image/png;base64,${b64}`, b64, new Uint8Array(readFileSync(file))]) {
    const img = await loadImage(src, { minPixels: 4096, maxPixels: 1 << 20 });
    assert.equal(img.format, 'png');
    assert.equal(img.minPixels, 4096);
    assert.equal(img.maxPixels, 1 << 20);
    assert.deepEqual(Buffer.from(img.data), expected);
  }
});
