import { resolveModel } from '../hub/index.ts';
import { DownloadBar } from './progress.ts';
import { DEMO_MODEL_DIR } from './paths.ts';

/**
 * `--model` → a local folder: an existing folder as it is; `org/name` from the Hugging Face cache,
 * downloaded (with a progress bar on a terminal) when missing. No flag: the bundled demo model.
 */
export async function resolveModelDir(model: string | undefined, opts: { revision?: string } = {}): Promise<{ dir: string; name: string }> {
  if (model === undefined) return { dir: DEMO_MODEL_DIR, name: 'demo' };
  const bar = new DownloadBar();
  try {
    const r = await resolveModel(model, { revision: opts.revision, onProgress: (p) => bar.update(p) });
    return { dir: r.path, name: r.repoId ?? model };
  } finally {
    bar.stop();
  }
}
