import { Option, type Command } from 'commander';
import { quantOption } from './load.ts';
import { clearStatus, floatArg, statusLine } from './options.ts';

interface QuantizeFlags {
  quant: 'q8' | 'q4';
  groupSize: string;
  symmetric?: boolean;
  shardSize?: number;
  force?: boolean;
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
    .action(async (input: string, output: string, flags: QuantizeFlags) => {
      const { quantizeCheckpoint } = await import('../api/quantize-checkpoint.ts');
      const t0 = performance.now();
      const s = quantizeCheckpoint(input, output, {
        mode: flags.quant,
        groupSize: Number(flags.groupSize),
        symmetric: flags.symmetric,
        overwrite: flags.force,
        maxShardBytes: flags.shardSize === undefined ? undefined : Math.round(flags.shardSize * 1024 ** 3),
        onProgress: (done, total) => statusLine(`quantizing ${input}: ${Math.round((100 * done) / total)}%`),
      });
      clearStatus();
      const gb = (b: number) => (b / 1024 ** 3).toFixed(2);
      process.stdout.write(
        `wrote ${output}: ${s.quantized} matrices quantized (${flags.quant}), ${s.tensors} tensors, ` +
          `${gb(s.inputBytes)} GB → ${gb(s.outputBytes)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    });
}
