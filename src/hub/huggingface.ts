/**
 * The Hugging Face Hub (or a mirror at HF_ENDPOINT): the revision listing
 * `/api/models/{repo}/revision/{rev}?blobs=true` gives the commit and, per file, its size and
 * hash (LFS sha256 or git blob sha1); files come from `/{repo}/resolve/{commit}/{path}`, which
 * redirects LFS files to a CDN (the token is not sent there).
 */
import { QvlError } from '../errors.ts';
import { httpGet } from '../media/http-get.ts';
import { fileInfoFromHeaders, hubHttpError, type HttpSettings } from './download-file.ts';
import type { HubSource, RepoListing } from './hub-source.ts';
import { getJson } from './hub-json.ts';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

interface Sibling {
  rfilename?: unknown;
  size?: unknown;
  blobId?: unknown;
  lfs?: { sha256?: unknown; size?: unknown };
}

export class HuggingFaceHub implements HubSource {
  readonly name = 'huggingface' as const;
  readonly defaultRevision = 'main';
  readonly headers: Record<string, string>;

  constructor(
    readonly endpoint: string = DEFAULT_HF_ENDPOINT,
    token?: string,
  ) {
    this.endpoint = endpoint.replace(/\/+$/, '');
    this.headers = { 'user-agent': 'qvl' };
    if (token) this.headers.authorization = `Bearer ${token}`;
  }

  async list(repoId: string, revision: string, http: HttpSettings): Promise<RepoListing> {
    const url = `${this.endpoint}/api/models/${repoId}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const info = (await getJson(url, this.headers, http, `${repoId}@${revision}`)) as { sha?: unknown; siblings?: Sibling[] };
    if (typeof info.sha !== 'string' || !Array.isArray(info.siblings)) {
      throw new QvlError('DOWNLOAD_FAILED', `${repoId}@${revision}: the hub's listing has no commit or file list`, { repo: repoId, revision });
    }
    return {
      commit: info.sha,
      files: info.siblings
        .filter((s) => typeof s.rfilename === 'string')
        .map((s) => {
          const lfsSha = typeof s.lfs?.sha256 === 'string' ? s.lfs.sha256 : undefined;
          const size = typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : undefined;
          return { path: s.rfilename as string, size, etag: lfsSha ?? (typeof s.blobId === 'string' ? s.blobId : undefined) };
        }),
    };
  }

  fileUrl(repoId: string, commit: string, file: string): string {
    return `${this.endpoint}/${repoId}/resolve/${encodeURIComponent(commit)}/${encodePath(file)}`;
  }

  /** HEAD on the resolve URL, not following the CDN redirect: the hub's own headers carry the hash. */
  async fileInfo(repoId: string, commit: string, file: string, http: HttpSettings): Promise<{ etag?: string; size?: number }> {
    const label = `${repoId}/${file}`;
    const { response, close } = await httpGet(this.fileUrl(repoId, commit, file), {
      method: 'HEAD',
      headers: { ...this.headers, 'accept-encoding': 'identity' },
      maxRedirects: 0,
      manualRedirect: true,
      connectTimeoutMs: http.connectTimeoutMs,
      readTimeoutMs: http.readTimeoutMs,
      allowPrivateNetwork: true,
      signal: http.signal,
      errorCode: 'DOWNLOAD_FAILED',
      label,
    });
    close();
    const status = response.statusCode ?? 0;
    if (status >= 400) throw hubHttpError(status, label, 'authorization' in this.headers, response.headers['x-error-code'] as string | undefined);
    const info = fileInfoFromHeaders(response.headers);
    const size = info.size ?? (status === 200 ? Number(response.headers['content-length']) : undefined);
    return { etag: info.etag, size: Number.isFinite(size) ? size : undefined };
  }
}
