/**
 * Draws parsed grounding (boxes and points, in original-image pixels) with their labels onto the
 * image, as an SVG overlay that sharp composites. The image is decoded the way the model saw it
 * (EXIF orientation applied), so the coordinates line up.
 */
import sharp from 'sharp';
import type { Grounding } from '../generate/parse/grounding.ts';
import { loadImage } from '../media/image.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';

const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#fabed4', '#469990'];

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** The overlay for an image of `width`×`height`. */
export function groundingSvg(g: Grounding, width: number, height: number): string {
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 250));
  const font = Math.max(12, Math.round(Math.min(width, height) / 40));
  const parts: string[] = [];
  const label = (text: string | undefined, x: number, y: number, colour: string) => {
    if (!text) return;
    const w = Math.ceil(text.length * font * 0.6) + 6;
    const top = y - font - 4 < 0 ? y : y - font - 4;
    parts.push(`<rect x="${x}" y="${top}" width="${w}" height="${font + 4}" fill="${colour}"/>`);
    parts.push(`<text x="${x + 3}" y="${top + font}" font-family="sans-serif" font-size="${font}" fill="#fff">${escapeXml(text)}</text>`);
  };
  g.boxes.forEach((b, i) => {
    if (!b.box) return;
    const colour = COLOURS[i % COLOURS.length]!;
    const [x1, y1, x2, y2] = b.box;
    parts.push(`<rect x="${x1}" y="${y1}" width="${x2 - x1}" height="${y2 - y1}" fill="none" stroke="${colour}" stroke-width="${stroke}"/>`);
    label(b.label, x1, y1, colour);
  });
  g.points.forEach((p, i) => {
    if (!p.point) return;
    const colour = COLOURS[(g.boxes.length + i) % COLOURS.length]!;
    const [x, y] = p.point;
    parts.push(`<circle cx="${x}" cy="${y}" r="${stroke * 3}" fill="${colour}" stroke="#fff" stroke-width="${Math.max(1, stroke / 2)}"/>`);
    label(p.label, x + stroke * 3, y, colour);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}

/** Writes `image` with the boxes and points drawn on it to `out` (format from the extension). */
export async function drawGrounding(image: string, g: Grounding, out: string, media: MediaSourceOptions = {}): Promise<void> {
  const img = await loadImage(image, media);
  const svg = groundingSvg(g, img.width, img.height);
  await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .toFile(out);
}
