/**
 * A model id or path → a local folder with the model's files.
 *
 * - An existing folder is used as it is.
 * - `org/name` (or `modelscope:org/name`) is looked up in the cache; it is downloaded when the
 *   cache lacks it, into the Hugging Face layout that Python's huggingface_hub shares.
 * - No network at all when offline (HF_HUB_OFFLINE=1 or `offline: true`), or when the revision is a
 *   commit hash whose snapshot is already complete.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import { type Env, hfHome, hfHubCacheDir, modelscopeCacheDir, RepoCache } from './cache-layout.ts';
import { downloadBlob, type HttpSettings } from './download-file.ts';
import type { HubSource, RepoFileEntry } from './hub-source.ts';
import { DEFAULT_HF_ENDPOINT, HuggingFaceHub } from './huggingface.ts';
import { isCompleteModelDir, isModelFile } from './model-files.ts';
import { DEFAULT_MODELSCOPE_ENDPOINT, ModelScopeHub } from './modelscope.ts';

export type ModelSourceName = 'huggingface' | 'modelscope';

export interface DownloadProgress {
  /** file being transferred (repository path) */
  file: string;
  fileBytes: number;
  fileTotal: number | undefined;
  /** over all files that need downloading */
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
}

export interface ResolveModelOptions {
  /** branch, tag or commit (default: main; master on ModelScope) */
  revision?: string;
  /** default: huggingface, or what a `modelscope:` / `hf:` prefix says */
  source?: ModelSourceName;
  /** cache root (default from HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME; MODELSCOPE_CACHE for ModelScope) */
  cacheDir?: string;
  /** hub address (default HF_ENDPOINT or https://huggingface.co; MODELSCOPE_ENDPOINT for ModelScope) */
  endpoint?: string;
  /** access token (default HF_TOKEN, then the token file under HF_HOME; MODELSCOPE_API_TOKEN) */
  token?: string;
  /** never touch the network (default: HF_HUB_OFFLINE) */
  offline?: boolean;
  /** extra repository files to fetch besides the model files */
  include?: (file: string) => boolean;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  connectTimeoutMs?: number;
  readTimeoutMs?: number;
  /** network failures retried per file, resuming (default 3) */
  retries?: number;
  /** environment to read settings from (default process.env) */
  env?: Env;
}

export interface ResolvedModel {
  /** folder holding config.json, weights, tokenizer and processor files */
  path: string;
  /** how it was found */
  from: 'local' | 'cache' | 'download';
  source?: ModelSourceName;
  repoId?: string;
  revision?: string;
  commit?: string;
  /** files fetched in this call */
  downloaded: string[];
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

function truthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

function hfToken(env: Env): string | undefined {
  if (env.HF_TOKEN) return env.HF_TOKEN;
  if (env.HUGGING_FACE_HUB_TOKEN) return env.HUGGING_FACE_HUB_TOKEN;
  const file = env.HF_TOKEN_PATH ?? path.join(hfHome(env), 'token');
  try {
    const t = readFileSync(file, 'utf8').trim();
    return t || undefined;
  } catch {
    return undefined;
  }
}

/** Splits `modelscope:org/name` / `hf:org/name` into source and repo id. */
export function parseModelId(id: string, fallback: ModelSourceName = 'huggingface'): { source: ModelSourceName; repoId: string } {
  const m = /^(modelscope|ms|hf|huggingface):(.*)$/.exec(id);
  const source: ModelSourceName = m ? (m[1] === 'modelscope' || m[1] === 'ms' ? 'modelscope' : 'huggingface') : fallback;
  return { source, repoId: m ? m[2]! : id };
}

export async function resolveModel(idOrPath: string, opts: ResolveModelOptions = {}): Promise<ResolvedModel> {
  const env = opts.env ?? process.env;
  if (existsSync(idOrPath) && statSync(idOrPath).isDirectory()) {
    return { path: path.resolve(idOrPath), from: 'local', downloaded: [] };
  }
  const { source: sourceName, repoId } = parseModelId(idOrPath, opts.source);
  if (!REPO_ID.test(repoId) || repoId.includes('..')) {
    throw new QvlError('FILE_NOT_FOUND', `${idOrPath}: not a folder, and not a model id of the form org/name`, { model: idOrPath });
  }
  const hub: HubSource =
    sourceName === 'modelscope'
      ? new ModelScopeHub(opts.endpoint ?? env.MODELSCOPE_ENDPOINT ?? DEFAULT_MODELSCOPE_ENDPOINT, opts.token ?? env.MODELSCOPE_API_TOKEN)
      : new HuggingFaceHub(opts.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT, opts.token ?? hfToken(env));
  const revision = opts.revision ?? hub.defaultRevision;
  const cacheDir = opts.cacheDir ?? (sourceName === 'modelscope' ? modelscopeCacheDir(env) : hfHubCacheDir(env));
  const cache = new RepoCache(cacheDir, repoId);
  const base = { source: sourceName, repoId, revision, downloaded: [] as string[] };

  const cachedCommit = cache.readRef(revision);
  const cachedDir = cachedCommit !== undefined ? cache.snapshotDir(cachedCommit) : undefined;
  const offline = opts.offline ?? truthy(env.HF_HUB_OFFLINE);
  const pinned = cachedCommit === revision; // a commit hash: its snapshot never changes
  if (offline || (pinned && cachedDir && isCompleteModelDir(cachedDir))) {
    if (cachedDir && isCompleteModelDir(cachedDir)) return { ...base, path: cachedDir, from: 'cache', commit: cachedCommit };
    throw new QvlError(
      'DOWNLOAD_FAILED',
      `${repoId}@${revision}: offline mode, and the cache at ${cache.root} has no complete snapshot of it; download it once while online`,
      { repo: repoId, revision, cache: cache.root },
    );
  }

  const http: HttpSettings = {
    connectTimeoutMs: opts.connectTimeoutMs ?? 15_000,
    readTimeoutMs: opts.readTimeoutMs ?? 60_000,
    maxRedirects: 10,
    retries: opts.retries ?? 3,
    signal: opts.signal,
  };
  const listing = await hub.list(repoId, revision, http);
  const wanted = listing.files.filter((f) => isModelFile(f.path) || (opts.include?.(f.path) ?? false));
  if (!wanted.some((f) => f.path === 'config.json')) {
    throw new QvlError('DOWNLOAD_FAILED', `${repoId}@${revision}: the repository has no config.json; is it a model repository?`, { repo: repoId, revision });
  }
  for (const f of wanted) {
    if (f.etag === undefined) Object.assign(f, await hub.fileInfo(repoId, listing.commit, f.path, http));
    if (f.etag === undefined) {
      throw new QvlError('DOWNLOAD_FAILED', `${repoId}/${f.path}: the hub gives no hash for this file, so it cannot be verified`, { repo: repoId, file: f.path });
    }
  }
  const missing = wanted.filter((f) => !existsSync(cache.blobPath(f.etag!)));
  const progress = {
    bytesDone: 0,
    bytesTotal: missing.reduce((a, f) => a + (f.size ?? 0), 0),
    filesDone: 0,
    filesTotal: missing.length,
  };
  for (const f of missing) await fetchOne(hub, cache, repoId, listing.commit, f, http, progress, opts.onProgress, base.downloaded);
  for (const f of wanted) cache.linkSnapshotFile(listing.commit, f.path, f.etag!);
  cache.writeRef(revision, listing.commit);
  const dir = cache.snapshotDir(listing.commit);
  return { ...base, path: dir, from: base.downloaded.length > 0 ? 'download' : 'cache', commit: listing.commit };
}

async function fetchOne(
  hub: HubSource,
  cache: RepoCache,
  repoId: string,
  commit: string,
  f: RepoFileEntry,
  http: HttpSettings,
  progress: { bytesDone: number; bytesTotal: number; filesDone: number; filesTotal: number },
  onProgress: ResolveModelOptions['onProgress'],
  downloaded: string[],
): Promise<void> {
  const before = progress.bytesDone;
  const report = (fileBytes: number, fileTotal: number | undefined) =>
    onProgress?.({ file: f.path, fileBytes, fileTotal, ...progress, bytesDone: before + fileBytes });
  report(0, f.size);
  const size = await downloadBlob({
    url: hub.fileUrl(repoId, commit, f.path),
    blobPath: cache.blobPath(f.etag!),
    expected: { etag: f.etag!, size: f.size },
    headers: hub.headers,
    label: `${repoId}/${f.path}`,
    http,
    onBytes: report,
  });
  progress.bytesDone = before + size;
  progress.filesDone += 1;
  report(size, size);
  downloaded.push(f.path);
}
