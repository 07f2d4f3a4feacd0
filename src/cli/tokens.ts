import type { Command } from 'commander';
import type { PromptCostItem } from '../api/prompt-cost.ts';
import { resolveModelDir } from './model-dir.ts';
import { collect, floatArg, intArg } from './options.ts';
import { videoPart } from './run.ts';

interface TokensFlags {
  model?: string;
  image: string[];
  video: string[];
  pdf: string[];
  fps?: number;
  maxFrames?: number;
  capPixelsPerFrame?: boolean;
  system?: string;
  minPixels?: number;
  maxPixels?: number;
  json?: boolean;
}

function describe(i: PromptCostItem): string {
  const size = `${i.width}x${i.height} → ${i.resized.width}x${i.resized.height}`;
  const video = i.frames !== undefined ? `, ${i.frames} frames in ${i.grid[0]} groups` : '';
  return `${i.kind.padEnd(5)} ${i.source}\n      ${size}, grid ${i.grid.join('x')}${video}: ${i.tokens} tokens`;
}

export function registerTokens(program: Command): void {
  program
    .command('tokens')
    .description('preview what a prompt costs in tokens (per image, video and PDF page) without running the model')
    .argument('[prompt...]', 'the text of the question (default: empty)')
    .option('-m, --model <dir|org/name>', 'model folder or repo id whose tokenizer, template and processor config to use (default: the demo model)')
    .option('-i, --image <src>', 'an image (path, URL or data URI); repeatable', collect, [])
    .option('-v, --video <src>', 'a video file, URL, or a folder of frame images; repeatable', collect, [])
    .option('--pdf <src>', 'a PDF document (each page becomes an image); repeatable', collect, [])
    .option('--fps <n>', 'video sampling rate (frame rate of a folder of frames), default 2', floatArg(0.001, 1000))
    .option('--max-frames <n>', 'video: most frames sampled (default 768)', intArg(1))
    .option('--cap-pixels-per-frame', "video: bound each frame's pixels as qwen-vl-utils does (transformers' cap_pixels_per_frame)")
    .option('-s, --system <text>', 'a system message')
    .option('--min-pixels <n>', 'smallest resized image area in pixels', intArg(1))
    .option('--max-pixels <n>', 'largest resized image area in pixels', intArg(1))
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `\nExample:\n  qvl tokens -i photo.jpg --max-pixels 401408 "What is in this picture?"`)
    .action(async (words: string[], flags: TokensFlags) => {
      const { dir } = await resolveModelDir(flags.model);
      const content: object[] = [
        ...flags.image.map((image) => ({ type: 'image', image })),
        ...flags.video.map((v) => videoPart(v, flags)),
        ...flags.pdf.map((pdf) => ({ type: 'pdf', pdf })),
        { type: 'text', text: words.join(' ') },
      ];
      const messages: object[] = [];
      if (flags.system) messages.push({ role: 'system', content: flags.system });
      messages.push({ role: 'user', content });
      // loaded here, not at start-up, so that `qvl --help` stays quick
      const [{ estimatePromptCost }, { promptPartsLoader }] = await Promise.all([import('../api/prompt-cost.ts'), import('../server/serve.ts')]);
      const parts = await promptPartsLoader(dir)();
      const cost = await estimatePromptCost(parts, messages, { minPixels: flags.minPixels, maxPixels: flags.maxPixels });
      if (flags.json) {
        process.stdout.write(JSON.stringify(cost, null, 2) + '\n');
        return;
      }
      for (const item of cost.items) process.stdout.write(describe(item) + '\n');
      process.stdout.write(`prompt: ${cost.promptTokens} tokens (${cost.mediaTokens} for media, ${cost.promptTokens - cost.mediaTokens} for text and markup)\n`);
    });
}
