/** Request bodies and media shared by the server fuzz suite and the soak: valid traffic and plain bad requests. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { REPO } from './serve-process.ts';

export const MEDIA_DIR = path.join(REPO, 'test', 'fixtures', 'media');
export const EXAMPLE_PNG = path.join(REPO, 'models', 'demo', 'example.png');

const MIME: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
  pdf: 'application/pdf',
  mp4: 'video/mp4',
  webm: 'video/webm',
};

export interface MediaFile {
  name: string;
  mime: string;
  kind: 'image' | 'video' | 'pdf';
  bytes: Buffer;
}

/** The real media files of the repository (fixtures and the demo model's example picture). */
export function loadMediaFiles(): MediaFile[] {
  const files = [
    EXAMPLE_PNG,
    ...['rgba.png', 'la.png', 'palette_trns.png', 'gray16.png', 'gray.jpg', 'cmyk.jpg', 'exif_orient6.jpg', 'two_frames.gif', 'lossy.webp', 'lossless.webp', 'rgb.avif', 'rgb.tiff', 'two_pages.pdf', 'clip_h264.mp4', 'clip_vp9.webm'].map((f) =>
      path.join(MEDIA_DIR, f),
    ),
  ];
  return files.map((f) => {
    const ext = path.extname(f).slice(1);
    const mime = MIME[ext];
    return { name: path.basename(f), mime, kind: mime.startsWith('video/') ? 'video' : mime === 'application/pdf' ? 'pdf' : 'image', bytes: readFileSync(f) };
  });
}

/**
 * Media the demo model accepts: the fixtures are 40×24, under the 32-pixel minimum side, so the
 * pictures are scaled up ×2 in their own format (the clips and the PDF are used as they are).
 */
export async function loadValidMedia(): Promise<MediaFile[]> {
  const out: MediaFile[] = [];
  for (const m of loadMediaFiles()) {
    if (m.kind !== 'image' || m.name === 'example.png') {
      out.push(m);
      continue;
    }
    try {
      const img = sharp(m.bytes);
      const { width = 0, height = 0, format } = await img.metadata();
      const bytes = await img
        .resize({ width: width * 2, height: height * 2, kernel: 'nearest' })
        .toFormat(format as Parameters<ReturnType<typeof sharp>['toFormat']>[0])
        .toBuffer();
      out.push({ ...m, name: `${m.name} ×2`, bytes });
    } catch {
      // a format sharp cannot write here: leave it out of the valid traffic
    }
  }
  return out;
}

export const toDataUri = (bytes: Buffer | Uint8Array | string, mime: string) => `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;

/** The content part that carries `url` as media of `kind`, in OpenAI's spelling. */
export function mediaPart(kind: MediaFile['kind'], url: string): Record<string, unknown> {
  if (kind === 'video') return { type: 'video_url', video_url: { url } };
  if (kind === 'pdf') return { type: 'file', file: { filename: 'doc.pdf', file_data: url } };
  return { type: 'image_url', image_url: { url } };
}

const PROMPTS = ['What colour is the shape?', 'What shape is it?', 'Describe the picture.', 'Count to three.', 'hi', 'Name a colour.'];


export const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

/** A valid chat request: text only, or one picture (or clip/document) from `media` first. */
export function validChatBody(rand: () => number, model: string, media: MediaFile[] | null, stream: boolean): Record<string, unknown> {
  const text = pick(rand, PROMPTS);
  const content = media && media.length > 0 ? [mediaPartFor(pick(rand, media)), { type: 'text', text }] : text;
  return {
    model,
    messages: [{ role: 'user', content }],
    max_tokens: 1 + Math.floor(rand() * 8),
    ...(stream ? { stream: true, stream_options: { include_usage: rand() < 0.5 } } : {}),
    ...(rand() < 0.3 ? { temperature: 0.7, top_p: 0.9, seed: Math.floor(rand() * 1000) } : {}),
  };
}

function mediaPartFor(m: MediaFile): Record<string, unknown> {
  const part = mediaPart(m.kind, toDataUri(m.bytes, m.mime));
  // keep videos and documents cheap: few frames, small pages
  if (m.kind === 'video') return { ...part, max_frames: 4, fps: 1 };
  if (m.kind === 'pdf') return { ...part, pages: [1] };
  return part;
}

/** A request that must be refused with a 4xx (bad field, bad media, unknown model, bad JSON). */
export function badRequest(rand: () => number, model: string): { route: string; body: string; contentType: string } {
  const json = (b: unknown) => ({ route: '/v1/chat/completions', body: JSON.stringify(b), contentType: 'application/json' });
  const user = [{ role: 'user', content: 'hi' }];
  const variants = [
    () => json({ model, messages: user, max_tokens: -1 }),
    () => json({ model, messages: 'hi', max_tokens: 1 }),
    () => json({ model: 'no-such-model', messages: user, max_tokens: 1 }),
    () => json({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }], max_tokens: 1 }),
    () => json({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } }] }], max_tokens: 1 }),
    () => json({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }] }], max_tokens: 1 }),
    () => json({ model, messages: user, max_tokens: 1, logprobs: true }),
    () => json({ model, messages: user, max_tokens: 1, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } }),
    () => ({ route: '/v1/chat/completions', body: '{"model": "' + model + '", "messages": [', contentType: 'application/json' }),
    () => ({ route: '/v1/tokenize', body: JSON.stringify({ model, messages: [{ role: 'nobody', content: 'x' }] }), contentType: 'application/json' }),
  ];
  return pick(rand, variants)();
}
