import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { DEFAULT_QUEUE } from '../batch/queue.ts';
import { BatchService } from '../batch/service.ts';
import { DEFAULT_MAX_INPUT_PIXELS } from '../media/image.ts';
import { WorkerEngine } from '../server/engine.ts';
import { startServer } from '../server/serve.ts';
import { addModelFlags, type ModelFlags } from './load.ts';
import { resolveModelDir } from './model-dir.ts';
import { collect, intArg } from './options.ts';

interface ServeFlags extends ModelFlags {
  host: string;
  port: number;
  servedModelName: string[];
  maxQueue: number;
  allowedLocalMediaPath: string[];
  allowPrivateUrls?: boolean;
  maxImages: number;
  maxBody: number;
  maxContext?: number;
  maxPixels?: number;
  maxInputPixels: number;
  maxTokens: number;
  maxPromptChars?: number;
  prepWorkers: number;
  shutdownGrace: number;
  redis?: string;
  batchQueue: string;
}

/** "64mb", "512k", "1048576" → bytes. */
export function sizeArg(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a size such as 64mb, 512kb or 1048576, got "${v}"`);
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Math.floor(Number(m[1]) * mult);
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve the model over an OpenAI-compatible HTTP API (POST /v1/chat/completions, streaming, images, video, PDFs, tools, JSON schema)')
    .option('--host <address>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('-p, --port <n>', 'port to listen on (0 picks a free one)', intArg(0, 65535), 8000)
    .option('--served-model-name <name>', 'the name clients pass as "model" (repeat for aliases; default: the --model value)', collect, [])
    .option('--max-queue <n>', 'requests that may wait while one runs; more get 429', intArg(0), 16)
    .option('--allowed-local-media-path <dir>', 'allow file:// media under this folder (repeatable); by default no local file is readable', collect, [])
    .option('--allow-private-urls', 'allow media URLs on loopback/private/link-local addresses (off: such URLs are refused)')
    .option('--max-images <n>', 'images, videos and documents per request', intArg(1), 32)
    .option('--max-body <size>', 'largest request body, e.g. 64mb (data URIs count)', sizeArg, 64 * 1024 * 1024)
    .option('--max-context <n>', 'prompt + answer tokens per request (default: the model\'s, at most 32768)', intArg(16))
    .option('--max-pixels <n>', 'most pixels an image is resized to; requests asking for more are refused (default: the model\'s)', intArg(1024))
    .option('--max-input-pixels <n>', 'refuse images larger than this before decoding them', intArg(1), DEFAULT_MAX_INPUT_PIXELS)
    .option('--max-tokens <n>', 'answer length when a request sets no max_tokens', intArg(1), 2048)
    .option('--max-prompt-chars <n>', 'characters of text per request, refused before tokenizing (default: 8 per token of --max-context)', intArg(1))
    .option('--prep-workers <n>', 'threads that fetch, decode and tokenize requests before they take the model', intArg(1, 64), 1)
    .option('--shutdown-grace <seconds>', 'on SIGTERM/SIGINT, how long running answers may take to finish', intArg(0), 10)
    .option('--redis <url>', 'also serve the OpenAI Batch API (/v1/files, /v1/batches) on this Redis; `qvl worker` processes do the work (docs/batch.md)')
    .option('--batch-queue <name>', 'with --redis: the queue batches go to', DEFAULT_QUEUE)
    .addHelpText(
      'after',
      `
Examples:
  qvl serve -m Qwen/Qwen3-VL-4B-Instruct --port 8000
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "Qwen/Qwen3-VL-4B-Instruct", "messages": [{"role": "user", "content": "Hello"}]}'

Sampling defaults come from the model's generation_config.json. See docs/server.md for every input kind.`,
    );
  addModelFlags(cmd).action(async (flags: ServeFlags) => {
    const { dir, name } = await resolveModelDir(flags.model);
    const names = flags.servedModelName.length > 0 ? flags.servedModelName : [flags.model ?? name];
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    let lastPct = -1;
    const engine = new WorkerEngine(
      dir,
      {
        backend: flags.backend,
        threads: flags.threads,
        quant: flags.quant,
        onProgress: (done, total) => {
          const pct = Math.floor((100 * done) / Math.max(1, total) / 10) * 10;
          if (pct !== lastPct) log(`loading ${dir}: ${(lastPct = pct)}%`);
        },
      },
      log,
    );
    const batch = flags.redis ? { service: await BatchService.connect(flags.redis, { queue: flags.batchQueue, role: 'service' }) } : undefined;
    const server = await startServer({
      engine,
      modelDir: dir,
      modelNames: names,
      host: flags.host,
      port: flags.port,
      log,
      batch,
      limits: {
        maxQueue: flags.maxQueue,
        maxBodyBytes: flags.maxBody,
        maxImages: flags.maxImages,
        maxContext: flags.maxContext,
        maxImagePixels: flags.maxPixels,
        maxPromptChars: flags.maxPromptChars,
        prepWorkers: flags.prepWorkers,
        shutdownGraceSeconds: flags.shutdownGrace,
        defaultMaxTokens: flags.maxTokens,
        media: {
          allowedLocalDirs: flags.allowedLocalMediaPath.map((d) => path.resolve(d)),
          allowPrivateNetwork: flags.allowPrivateUrls === true,
          maxInputPixels: flags.maxInputPixels,
        },
      },
    });
    log(`listening on ${server.url} (model "${names[0]}"; 503 until loaded)`);
    const stop = () => {
      log(`shutting down: refusing new requests, running answers have ${flags.shutdownGrace} s to finish`);
      void server.close().then(() => {
        log('stopped');
        process.exit(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await engine.loaded;
    if (engine.state() === 'failed') {
      log(`the model failed to load: ${engine.failure()?.message}`);
      await server.close();
      process.exitCode = 2;
      return;
    }
    log(`ready: ${dir} on the ${engine.info()?.backend} backend`);
  });
}
