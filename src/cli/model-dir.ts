import { locateModel } from '../api/model-location.ts';
import { DEMO_MODEL_DIR } from './paths.ts';

/**
 * `--model` → a local folder: an existing folder as it is (a missing one that looks like a path is
 * an error, never a download); `org/name` from the Hugging Face cache, downloaded (with a progress
 * bar on a terminal) when missing. No flag: the bundled demo model.
 */
export async function resolveModelDir(model: string | undefined, opts: { revision?: string } = {}): Promise<{ dir: string; name: string }> {
  if (model === undefined) return { dir: DEMO_MODEL_DIR, name: 'demo' };
  const where = locateModel(model);
  if (where.kind === 'local') return { dir: where.dir, name: model };
  // the hub client and the progress bar load only when a download may happen
  const [{ resolveModel }, { DownloadBar }] = await Promise.all([import('../hub/index.ts'), import('./progress.ts')]);
  const bar = new DownloadBar();
  try {
    const r = await resolveModel(where.id, { revision: opts.revision, onProgress: (p) => bar.update(p) });
    return { dir: r.path, name: r.repoId ?? model };
  } finally {
    bar.stop();
  }
}
