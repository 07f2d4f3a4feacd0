/**
 * ModelScope as a source. Its API differs from Hugging Face's: the listing is
 * `/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true`, answering
 * `{Code: 200, Data: {Files: [{Path, Type, Size, Sha256}]}}`, and a file is fetched from
 * `/api/v1/models/{repo}/repo?Revision={rev}&FilePath={path}`. The listing names no repository
 * commit, so the snapshot folder is named after the revision (default `master`).
 */
import { QvlError } from '../errors.ts';
import type { HttpSettings } from './download-file.ts';
import type { HubSource, RepoListing } from './hub-source.ts';
import { getJson } from './hub-json.ts';

export const DEFAULT_MODELSCOPE_ENDPOINT = 'https://www.modelscope.cn';

interface MsFile {
  Path?: unknown;
  Type?: unknown;
  Size?: unknown;
  Sha256?: unknown;
}

export class ModelScopeHub implements HubSource {
  readonly name = 'modelscope' as const;
  readonly defaultRevision = 'master';
  readonly headers: Record<string, string>;

  constructor(
    readonly endpoint: string = DEFAULT_MODELSCOPE_ENDPOINT,
    token?: string,
  ) {
    this.endpoint = endpoint.replace(/\/+$/, '');
    this.headers = { 'user-agent': 'qvl' };
    if (token) this.headers.authorization = `Bearer ${token}`;
  }

  async list(repoId: string, revision: string, http: HttpSettings): Promise<RepoListing> {
    const url = `${this.endpoint}/api/v1/models/${repoId}/repo/files?Revision=${encodeURIComponent(revision)}&Recursive=true`;
    const label = `modelscope:${repoId}@${revision}`;
    const body = (await getJson(url, this.headers, http, label)) as { Code?: unknown; Message?: unknown; Data?: { Files?: MsFile[] } };
    if (body.Code !== 200 || !Array.isArray(body.Data?.Files)) {
      throw new QvlError('DOWNLOAD_FAILED', `${label}: ModelScope answered ${String(body.Code)} ${String(body.Message ?? '')}`.trim(), { repo: repoId, revision });
    }
    return {
      commit: revision,
      files: body.Data.Files.filter((f) => f.Type !== 'tree' && typeof f.Path === 'string').map((f) => ({
        path: f.Path as string,
        size: typeof f.Size === 'number' ? f.Size : undefined,
        etag: typeof f.Sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.Sha256) ? f.Sha256 : undefined,
      })),
    };
  }

  fileUrl(repoId: string, commit: string, file: string): string {
    return `${this.endpoint}/api/v1/models/${repoId}/repo?Revision=${encodeURIComponent(commit)}&FilePath=${encodeURIComponent(file)}`;
  }

  async fileInfo(repoId: string, _commit: string, file: string): Promise<{ etag?: string; size?: number }> {
    throw new QvlError('DOWNLOAD_FAILED', `modelscope:${repoId}/${file}: the listing gives no sha256 for this file, so it cannot be verified`, {
      repo: repoId,
      file,
    });
  }
}
