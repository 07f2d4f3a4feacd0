import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { QvlError } from '../errors.ts';
import type { OutputGrounding } from '../generate/parse/output.ts';
import { addModelFlags, describeBackend, loadModel, type ModelFlags } from './load.ts';
import { addGenerationFlags, collect, floatArg, generationOptions, intArg, type GenerationFlags } from './options.ts';

interface RunFlags extends ModelFlags, GenerationFlags {
  image: string[];
  pdf: string[];
  video?: string;
  fps?: number;
  maxFrames?: number;
  capPixelsPerFrame?: boolean;
  stats?: boolean;
  draw?: string;
}

const IMAGE_EXT = /\.(png|jpe?g|webp|gif|bmp|tiff?|avif)$/i;

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('answer one question, optionally about images, a video or PDFs, streaming the answer')
    .argument('<prompt...>', 'the question or instruction')
    .option('-i, --image <path>', 'an image (path, URL or data URI); repeat for several', collect, [])
    .option('-v, --video <path>', 'a video file, URL, or a folder of frame images')
    .option('--pdf <path>', 'a PDF document (each page becomes an image); repeat for several', collect, [])
    .option('--fps <n>', 'video: sampling rate for a file, frame rate of a folder of frames (default 2)', floatArg(0.001, 1000))
    .option('--max-frames <n>', 'video: most frames sampled (default 768; an hour at 2 fps is 7200)', intArg(1))
    .option('--cap-pixels-per-frame', "video: bound each frame's pixels as qwen-vl-utils does (transformers' cap_pixels_per_frame)")
    .option('--stats', 'print token counts, speed and the backend that ran (with its instruction set) to stderr when done')
    .option('--draw <file>', 'grounding: draw the boxes/points of the answer on the first image and save it (png, jpg or webp)');
  addModelFlags(addGenerationFlags(cmd, 512)).action(async (words: string[], flags: RunFlags) => {
    if (flags.draw && flags.image.length === 0) throw new QvlError('OPTION_INVALID', '--draw needs an image (--image)', {});
    const content: object[] = [];
    for (const img of flags.image) content.push({ type: 'image', image: img });
    if (flags.video) content.push(videoPart(flags.video, flags));
    for (const pdf of flags.pdf) content.push({ type: 'pdf', pdf });
    content.push({ type: 'text', text: words.join(' ') });
    const messages: object[] = [];
    if (flags.system) messages.push({ role: 'system', content: flags.system });
    messages.push({ role: 'user', content });

    const model = await loadModel(flags);
    const stream = model.stream(messages, generationOptions(flags));
    for await (const delta of stream) process.stdout.write(delta);
    process.stdout.write('\n');
    const r = await stream.result;
    if (flags.draw) await drawAnswer(flags.draw, flags.image, r.output.grounding);
    if (flags.stats) {
      const tps = r.usage.completionTokens / Math.max(1e-9, r.timings.decodeMs / 1000);
      process.stderr.write(
        `prompt ${r.usage.promptTokens} tokens in ${(r.timings.prefillMs / 1000).toFixed(2)} s, ` +
          `${r.usage.completionTokens} generated at ${tps.toFixed(1)} tok/s, finish: ${r.finishReason} (${describeBackend(model.info())})\n`,
      );
    }
  });
}

/** --draw: the answer's grounding over the image it refers to. */
async function drawAnswer(out: string, images: string[], g: OutputGrounding | undefined): Promise<void> {
  if (!g || g.image === undefined) {
    process.stderr.write('--draw: the answer has no boxes or points (bbox_2d / point_2d); nothing drawn\n');
    return;
  }
  const { drawGrounding } = await import('./draw-grounding.ts');
  await drawGrounding(images[g.image]!, g, out);
  process.stderr.write(`--draw: ${g.boxes.length} boxes and ${g.points.length} points drawn to ${out}\n`);
}

export interface VideoPartFlags {
  fps?: number;
  maxFrames?: number;
  capPixelsPerFrame?: boolean;
}

/** A folder of frames becomes a frame-list video; anything else is a video file or URL. */
export function videoPart(source: string, o: VideoPartFlags = {}): object {
  const extra = { ...(o.maxFrames === undefined ? {} : { max_frames: o.maxFrames }), ...(o.capPixelsPerFrame ? { cap_pixels_per_frame: true } : {}) };
  if (fs.existsSync(source) && fs.statSync(source).isDirectory()) {
    const frames = fs
      .readdirSync(source)
      .filter((f) => IMAGE_EXT.test(f))
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
      .map((f) => path.join(source, f));
    if (frames.length === 0) throw new QvlError('VIDEO_INVALID', `the folder ${source} has no image frames`, { source });
    return { type: 'video', video: frames, fps: o.fps ?? 2, ...extra };
  }
  return { type: 'video', video: source, ...(o.fps === undefined ? {} : { fps: o.fps }), ...extra };
}
