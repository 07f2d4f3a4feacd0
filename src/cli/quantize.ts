import { Option, type Command } from 'commander';
import type { QuantizeCheckpointOptions } from '../api/quantize-checkpoint.ts';
import { QvlError } from '../errors.ts';
import { quantOption } from './load.ts';
import { clearStatus, countProgress, floatArg, intArg, statusLine } from './options.ts';

interface QuantizeFlags {
  quant: 'q8' | 'q4';
  groupSize: string;
  symmetric?: boolean;
  shardSize?: number;
  force?: boolean;
  calibration?: string;
  calibrationLimit?: number;
  damp?: number;
}

export function registerQuantize(program: Command): void {
  program
    .command('quantize')
    .description('write a q8 or q4 copy of a model folder that loads without re-quantizing (see docs/quantization.md)')
    .argument('<in>', 'model folder with BF16/F16/F32 safetensors')
    .argument('<out>', 'output folder (created; must be empty unless --force)')
    .addOption(quantOption('q8: 8-bit everywhere; q4: 4-bit text decoder, 8-bit embeddings and vision').makeOptionMandatory())
    .addOption(new Option('--group-size <n>', 'q4: columns per scale').choices(['32', '128']).default('32'))
    .option('--symmetric', 'q4: no zero points (GGML Q4_0 style) instead of min/max with zero points')
    .option('--shard-size <GB>', 'largest output file before starting another shard (default 4)', floatArg(0.001))
    .option('-f, --force', 'replace the weights and config in a non-empty output folder')
    .option('--calibration <dataset>', "q4: GPTQ-quantize the text decoder from the inputs it sees on this dataset's items (items.jsonl as `qvl eval` reads it)")
    .option('--calibration-limit <n>', 'use at most the first n calibration items', intArg(1))
    .option('--damp <x>', 'GPTQ damping, a fraction of the mean Hessian diagonal (default 0.01)', floatArg(1e-6, 10))
    .action(async (input: string, output: string, flags: QuantizeFlags) => {
      const { quantizeCheckpoint } = await import('../api/quantize-checkpoint.ts');
      const t0 = performance.now();
      const opts = {
        mode: flags.quant,
        groupSize: Number(flags.groupSize),
        symmetric: flags.symmetric,
        overwrite: flags.force,
        maxShardBytes: flags.shardSize === undefined ? undefined : Math.round(flags.shardSize * 1024 ** 3),
        onProgress: (done: number, total: number) => statusLine(`quantizing ${input}: ${Math.round((100 * done) / total)}%`),
      };
      if (flags.calibration === undefined && (flags.calibrationLimit !== undefined || flags.damp !== undefined)) {
        throw new QvlError('OPTION_INVALID', '--calibration-limit and --damp need --calibration', {});
      }
      const calibrated = flags.calibration === undefined ? undefined : await calibrate(input, output, flags, opts);
      const s = quantizeCheckpoint(input, output, { ...opts, calibrated });
      clearStatus();
      const gb = (b: number) => (b / 1024 ** 3).toFixed(2);
      if (calibrated) process.stdout.write(`calibrated the text decoder on ${calibrated.info.samples} items (${calibrated.info.tokens} tokens)\n`);
      process.stdout.write(
        `wrote ${output}: ${s.quantized} matrices quantized (${flags.quant}), ${s.tensors} tensors, ` +
          `${gb(s.inputBytes)} GB → ${gb(s.outputBytes)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    });
}

/** GPTQ over the calibration set's items, after every check `quantizeCheckpoint` would make. */
async function calibrate(
  input: string,
  output: string,
  flags: QuantizeFlags,
  opts: QuantizeCheckpointOptions,
): Promise<NonNullable<QuantizeCheckpointOptions['calibrated']>> {
  const info = { method: 'gptq', damp: flags.damp ?? 0.01, samples: 0, tokens: 0 };
  const { checkQuantizeCheckpoint } = await import('../api/quantize-checkpoint.ts');
  checkQuantizeCheckpoint(input, output, { ...opts, calibrated: { weights: new Map(), info } });
  const { loadDataset, resolveMedia } = await import('../eval/dataset.ts');
  const { calibrateQ4 } = await import('../api/calibrate.ts');
  const ds = loadDataset(flags.calibration!);
  const items = ds.items.slice(0, flags.calibrationLimit ?? ds.items.length);
  // a 4B model calibrates for tens of minutes: a log gets a line per decoder layer, with the time left
  const itemProgress = countProgress((done, total, s) => `calibration: prepared ${done}/${total} items, ${s.toFixed(0)} s`);
  let layerProgress: ((done: number, total: number) => void) | undefined;
  const layerLine = (done: number, total: number, s: number) => `calibration: decoder layer ${done}/${total} quantized, ${s.toFixed(0)} s (about ${((s / done) * (total - done)).toFixed(0)} s left)`;
  const r = await calibrateQ4(input, items.map((i) => ({ messages: resolveMedia(ds.dir, i.messages), answer: i.expected })), {
    groupSize: opts.groupSize,
    damp: info.damp,
    onProgress: (stage, done, total) => {
      if (stage === 'layers') return layerProgress?.(done, total);
      itemProgress(done, total);
      // the layers' seconds (and the time left) count from the end of the items' preparation
      if (done === total) layerProgress = countProgress(layerLine, { lines: Infinity });
    },
  });
  clearStatus();
  info.samples = r.samples;
  info.tokens = r.tokens;
  return { weights: r.weights, info };
}
