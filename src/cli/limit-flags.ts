/**
 * The request limits a server, a batch submitter and a queue worker share: the same flags with
 * the same defaults, so all three accept and refuse the same requests.
 */
import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULT_MAX_INPUT_PIXELS } from '../media/source-options.ts';
import { resolveLimits, type ServerLimits } from '../server/limits.ts';
import { collect, intArg } from './options.ts';

/** "64mb", "512k", "1048576" → bytes. */
export function sizeArg(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a size such as 64mb, 512kb or 1048576, got "${v}"`);
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Math.floor(Number(m[1]) * mult);
}

export interface LimitFlags {
  maxImages: number;
  maxBody: number;
  maxContext?: number;
  maxPixels?: number;
  maxInputPixels: number;
  maxTokens: number;
  maxPromptChars?: number;
  allowedLocalMediaPath: string[];
  allowPrivateUrls?: boolean;
}

/** The request limits of `qvl serve`, also for batch submitters and workers (give both the same values). */
export function addLimitFlags(cmd: Command): Command {
  return cmd
    .option('--allowed-local-media-path <dir>', 'local media (paths, file:// URLs) may be read under this folder (repeatable); by default no local file is', collect, [])
    .option('--allow-private-urls', 'allow media URLs on loopback/private/link-local addresses (off: such URLs are refused)')
    .option('--max-images <n>', 'images, videos and documents per request', intArg(1), 32)
    .option('--max-body <size>', 'largest request body (a batch: one line), e.g. 64mb; data URIs count', sizeArg, 64 * 1024 * 1024)
    .option('--max-context <n>', 'prompt + answer tokens per request (default: the model\'s, at most 32768)', intArg(16))
    .option('--max-pixels <n>', 'most pixels an image is resized to; requests asking for more are refused (default: the model\'s)', intArg(1024))
    .option('--max-input-pixels <n>', 'refuse images larger than this before decoding them', intArg(1), DEFAULT_MAX_INPUT_PIXELS)
    .option('--max-tokens <n>', 'answer length when a request sets no max_tokens', intArg(1), 2048)
    .option('--max-prompt-chars <n>', 'characters of text per request, refused before tokenizing (default: 8 per token of --max-context)', intArg(1));
}

export function limitsFromFlags(f: LimitFlags): ServerLimits {
  return resolveLimits({
    maxBodyBytes: f.maxBody,
    maxImages: f.maxImages,
    maxContext: f.maxContext,
    maxImagePixels: f.maxPixels,
    maxPromptChars: f.maxPromptChars,
    defaultMaxTokens: f.maxTokens,
    media: {
      allowedLocalDirs: f.allowedLocalMediaPath.map((d) => path.resolve(d)),
      allowPrivateNetwork: f.allowPrivateUrls === true,
      maxInputPixels: f.maxInputPixels,
    },
  });
}

