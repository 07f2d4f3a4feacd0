/** `qvl worker`: load a model once and answer batch jobs from the Redis queue until stopped. */
import type { Command } from 'commander';
import { addQueueFlags, type QueueFlags } from './batch.ts';
import { addLimitFlags, limitsFromFlags, type LimitFlags } from './limit-flags.ts';
import { describePlan } from '../api/memory-plan.ts';
import { addModelFlags, loadSettings, planQuietly, type ModelFlags } from './load.ts';
import { resolveModelDir } from './model-dir.ts';
import { collect, intArg } from './options.ts';

interface WorkerFlags extends ModelFlags, QueueFlags, LimitFlags {
  parallel: number;
  servedModelName: string[];
  lockDuration: number;
  shutdownGrace: number;
}

export function registerWorker(program: Command): void {
  const cmd = program
    .command('worker')
    .description('process batch jobs from a Redis queue (see `qvl batch`): load the model once, answer jobs until stopped')
    .option('--parallel <n>', 'jobs held at once: while one generates, the next is fetched and prepared', intArg(1, 64), 2)
    .option('--served-model-name <name>', 'the "model" value of the requests this worker answers (repeat for aliases; default: the --model value, or "demo")', collect, [])
    .option('--lock-duration <seconds>', 'a job whose worker stops renewing its lock this long is given to another worker', intArg(1, 3600), 30)
    .option('--shutdown-grace <seconds>', 'on SIGTERM/SIGINT, how long running jobs may take to finish before they go back to the queue', intArg(0), 30)
    .addHelpText(
      'after',
      `
Examples:
  qvl worker --redis redis://queue-host:6379 --threads 2
  qvl worker --redis redis://queue-host:6379 -m Qwen/Qwen3-VL-4B-Instruct --queue qwen4b --allowed-local-media-path /srv/scans

Give workers and \`qvl batch submit\` the same request limits. See docs/batch.md.`,
    );
  addModelFlags(addLimitFlags(addQueueFlags(cmd))).action(async (flags: WorkerFlags) => {
    const { dir, name } = await resolveModelDir(flags.model);
    const { BatchWorker } = await import('../batch/worker.ts');
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    const names = flags.servedModelName.length > 0 ? flags.servedModelName : [flags.model ?? name];
    const settings = loadSettings(flags);
    log(`loading ${dir}; ${describePlan(planQuietly(dir, settings))}`);
    const worker = await BatchWorker.start({
      redisUrl: flags.redis,
      queue: flags.queue,
      modelDir: dir,
      modelNames: names,
      load: settings,
      limits: limitsFromFlags({ ...flags, maxContext: flags.maxContext ?? flags.context }),
      parallel: flags.parallel,
      lockDurationMs: flags.lockDuration * 1000,
      log,
    });
    const stop = () => {
      log(`stopping: taking no new jobs; running ones have ${flags.shutdownGrace} s to finish, then go back to the queue`);
      // with Redis unreachable nothing can be put back: the locks expire and other workers take the jobs
      setTimeout(() => {
        log('could not hand the running jobs back (is Redis reachable?); exiting; they will stall and run elsewhere');
        process.exit(1);
      }, (flags.shutdownGrace + 15) * 1000).unref();
      void worker.stop(flags.shutdownGrace * 1000).then(() => {
        const s = worker.stats;
        log(`stopped (${s.completed} answered, ${s.failed} failed, ${s.released} put back)`);
        process.exit(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
