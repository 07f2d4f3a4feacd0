/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub so that either can use what
 * the other downloaded:
 *
 *   <cache>/models--<org>--<name>/blobs/<etag>                 file contents, named by hash
 *   <cache>/models--<org>--<name>/snapshots/<commit>/<path>    relative symlinks into blobs/
 *   <cache>/models--<org>--<name>/refs/<revision>              the commit a branch/tag points to
 */
import { existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export type Env = Record<string, string | undefined>;

/** HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hfHubCacheDir(env: Env = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return path.join(hfHome(env), 'hub');
}

export function hfHome(env: Env = process.env): string {
  return env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'huggingface');
}

/** ModelScope downloads keep the same layout, in their own root (MODELSCOPE_CACHE, default ~/.cache/modelscope/hub). */
export function modelscopeCacheDir(env: Env = process.env): string {
  return env.MODELSCOPE_CACHE ?? path.join(homedir(), '.cache', 'modelscope', 'hub');
}

/** `org/name` → `models--org--name` */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

export class RepoCache {
  readonly root: string;
  constructor(cacheDir: string, readonly repoId: string) {
    this.root = path.join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    return path.join(this.root, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return path.join(this.root, 'snapshots', commit);
  }

  /** The commit a revision names: itself when it is a 40-hex commit, else what refs/<revision> holds. */
  readRef(revision: string): string | undefined {
    if (/^[0-9a-f]{40}$/.test(revision)) return revision;
    const ref = path.join(this.root, 'refs', revision);
    return existsSync(ref) ? readFileSync(ref, 'utf8').trim() : undefined;
  }

  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = path.join(this.root, 'refs', revision);
    mkdirSync(path.dirname(ref), { recursive: true });
    const tmp = `${ref}.tmp-${process.pid}`;
    writeFileSync(tmp, commit);
    renameSync(tmp, ref);
  }

  /** Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink (as huggingface_hub does). */
  linkSnapshotFile(commit: string, file: string, etag: string): string {
    const link = path.join(this.snapshotDir(commit), ...file.split('/'));
    mkdirSync(path.dirname(link), { recursive: true });
    const target = path.relative(path.dirname(link), this.blobPath(etag));
    try {
      if (readlinkSync(link) === target) return link;
      unlinkSync(link);
    } catch {
      // no link yet
    }
    symlinkSync(target, link);
    return link;
  }
}
