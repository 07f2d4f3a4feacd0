import type { Command } from 'commander';
import { DEFAULT_QUEUE } from '../batch/queue-name.ts';
import { addLimitFlags, limitsFromFlags, sizeArg, type LimitFlags } from './limit-flags.ts';
import { describePlan } from '../api/memory-plan.ts';
import { addModelFlags, loadSettings, planQuietly, type ModelFlags } from './load.ts';
import { resolveModelDir } from './model-dir.ts';
import { collect, intArg } from './options.ts';

interface ServeFlags extends ModelFlags, LimitFlags {
  host: string;
  port: number;
  servedModelName: string[];
  maxQueue: number;
  parallel: number;
  kvCacheMem: number;
  visionCacheMem: number;
  prepWorkers: number;
  shutdownGrace: number;
  redis?: string;
  batchQueue: string;
}

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve the model over an OpenAI-compatible HTTP API (POST /v1/chat/completions, streaming, images, video, PDFs, tools, JSON schema)')
    .option('--host <address>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('-p, --port <n>', 'port to listen on (0 picks a free one)', intArg(0, 65535), 8000)
    .option('--served-model-name <name>', 'the name clients pass as "model" (repeat for aliases; default: the --model value)', collect, [])
    .option('--parallel <n>', 'answers generated at once, decoded together in one pass over the weights per token', intArg(1, 64), 4)
    .option('--kv-cache-mem <size>', 'KV cache kept for prompts that start like earlier ones (conversation turns, the same picture), e.g. 2gb; 0: off', sizeArg, 1024 ** 3)
    .option('--vision-cache-mem <size>', "vision tower outputs kept per picture or video, e.g. 256mb; 0: off", sizeArg, 256 * 1024 ** 2)
    .option('--max-queue <n>', 'requests that may be prepared or wait while --parallel run; more get 429', intArg(0), 16)
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
  addModelFlags(addLimitFlags(cmd)).action(async (flags: ServeFlags) => {
    // the server's modules load here, not at start-up: `qvl --help` stays fast
    const [{ WorkerEngine }, { startServer }] = await Promise.all([import('../server/engine.ts'), import('../server/serve.ts')]);
    const { dir, name } = await resolveModelDir(flags.model);
    const names = flags.servedModelName.length > 0 ? flags.servedModelName : [flags.model ?? name];
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    let lastPct = -1;
    const settings = loadSettings(flags);
    log(describePlan(planQuietly(dir, settings)));
    const engine = new WorkerEngine(
      dir,
      {
        ...settings,
        parallel: flags.parallel,
        prefixCacheBytes: flags.kvCacheMem,
        visionCacheBytes: flags.visionCacheMem,
        onProgress: (done, total) => {
          const pct = Math.floor((100 * done) / Math.max(1, total) / 10) * 10;
          if (pct !== lastPct) log(`loading ${dir}: ${(lastPct = pct)}%`);
        },
      },
      log,
    );
    const batch = flags.redis ? { service: await (await import('../batch/service.ts')).BatchService.connect(flags.redis, { queue: flags.batchQueue, role: 'service' }) } : undefined;
    const server = await startServer({
      engine,
      modelDir: dir,
      modelNames: names,
      host: flags.host,
      port: flags.port,
      log,
      batch,
      // a --context chosen for the server is also what a request may use, unless --max-context says less
      limits: { ...limitsFromFlags({ ...flags, maxContext: flags.maxContext ?? flags.context }), maxQueue: flags.maxQueue, parallel: flags.parallel, prepWorkers: flags.prepWorkers, shutdownGraceSeconds: flags.shutdownGrace },
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
