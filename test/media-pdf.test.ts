import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { pageScale, probePdf, renderPdf } from '../src/media/pdf.ts';

// Hand-written by tools/reference/make_pdf_fixture.py; its docstring gives the geometry checked here.
const PDF = path.join(import.meta.dirname, 'fixtures', 'media', 'two_pages.pdf');

function px(img: { width: number; data: Uint8Array }, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3;
  return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
}

test('probePdf reads page count and sizes in points', async () => {
  assert.deepEqual(await probePdf(readFileSync(PDF)), [
    { page: 1, widthPt: 200, heightPt: 100 },
    { page: 2, widthPt: 100, heightPt: 150 },
  ]);
});

test('renderPdf draws each page where the PDF put its rectangle', async () => {
  const doc = await renderPdf(PDF, { dpi: 72 });
  assert.equal(doc.pageCount, 2);
  const [p1, p2] = doc.pages;
  assert.deepEqual([p1!.width, p1!.height, p2!.width, p2!.height], [200, 100, 100, 150]);
  // page 1: red box x 20..80, PDF y 20..60 → canvas rows 40..80 (y flips)
  assert.deepEqual(px(p1!, 50, 60), [255, 0, 0]);
  assert.deepEqual(px(p1!, 10, 60), [255, 255, 255]);
  assert.deepEqual(px(p1!, 50, 30), [255, 255, 255]);
  // page 2: blue lower half
  assert.deepEqual(px(p2!, 50, 120), [0, 0, 255]);
  assert.deepEqual(px(p2!, 50, 30), [255, 255, 255]);
  // the text "qvl" at (100, 70) leaves dark pixels in rows 20..35
  let dark = 0;
  for (let y = 18; y < 36; y++) for (let x = 98; x < 130; x++) if (px(p1!, x, y)[0]! < 128) dark++;
  assert.ok(dark > 10, `text pixels: ${dark}`);
});

test('the per-page pixel budget scales pages down, keeping the aspect', async () => {
  const doc = await renderPdf(readFileSync(PDF), { dpi: 300, maxPagePixels: 5000, pages: [2] });
  const p = doc.pages[0]!;
  assert.equal(p.page, 2);
  assert.ok(p.width * p.height <= 5000, `${p.width}x${p.height}`);
  assert.ok(Math.abs(p.height / p.width - 1.5) < 0.05);
  assert.deepEqual(px(p, Math.floor(p.width / 2), p.height - 3), [0, 0, 255]);
  const s = pageScale(612, 792, 144, 1_000_000);
  assert.ok(Math.ceil(612 * s) * Math.ceil(792 * s) <= 1_000_000);
});

test('bad PDFs and bad page choices are refused', async () => {
  await assert.rejects(renderPdf(Buffer.from('%PDF-1.4 nothing here')), (e) => isQvlError(e, 'IMAGE_DECODE') && /cannot read PDF/.test(e.message));
  await assert.rejects(renderPdf(PDF, { pages: [3] }), (e) => isQvlError(e, 'OPTION_INVALID') && /page 3 does not exist/.test(e.message));
  await assert.rejects(renderPdf(PDF, { maxPages: 1 }), (e) => isQvlError(e, 'MEDIA_TOO_LARGE') && /2 pages, over the limit of 1/.test(e.message));
});
