import { type Command, Option } from 'commander';
import type { ModelSourceName } from '../hub/index.ts';

interface DownloadFlags {
  revision?: string;
  source?: ModelSourceName;
  cacheDir?: string;
}

export function registerDownload(program: Command): void {
  program
    .command('download')
    .description('download a model into the Hugging Face cache (resumable; prints the local folder)')
    .argument('<repo>', 'repository id, e.g. Qwen/Qwen3-VL-4B-Instruct (prefix modelscope: for ModelScope)')
    .option('-r, --revision <rev>', 'branch, tag or commit (default: main)')
    .addOption(new Option('--source <name>', 'where to download from (default: from the prefix, else huggingface)').choices(['huggingface', 'modelscope']))
    .option('--cache-dir <dir>', 'cache root (default: HF_HUB_CACHE, HF_HOME/hub, or ~/.cache/huggingface/hub)')
    .addHelpText(
      'after',
      `
Only the files a model needs are fetched (config, weights, tokenizer, processor and template files).
An interrupted download continues where it stopped. Set HF_TOKEN for gated repositories and
HF_ENDPOINT for a mirror.

Example:
  qvl download Qwen/Qwen3-VL-2B-Instruct && qvl run -m Qwen/Qwen3-VL-2B-Instruct "Hello"`,
    )
    .action(async (repo: string, flags: DownloadFlags) => {
      const [{ resolveModel }, { DownloadBar }] = await Promise.all([import('../hub/index.ts'), import('./progress.ts')]);
      const bar = new DownloadBar();
      let r;
      try {
        r = await resolveModel(repo, { revision: flags.revision, source: flags.source, cacheDir: flags.cacheDir, onProgress: (p) => bar.update(p) });
      } finally {
        bar.stop();
      }
      const what = r.from === 'download' ? `downloaded ${r.downloaded.length} files` : r.from === 'cache' ? 'already in the cache' : 'a local folder';
      process.stderr.write(`${repo}${r.commit ? `@${r.commit.slice(0, 12)}` : ''}: ${what}\n`);
      process.stdout.write(`${r.path}\n`);
    });
}
