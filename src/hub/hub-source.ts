/** What resolveModel needs from a model hub; Hugging Face and ModelScope each implement it. */
import type { HttpSettings } from './download-file.ts';

export interface RepoFileEntry {
  /** path inside the repository, `/`-separated */
  path: string;
  size?: number;
  /** sha256 (LFS) or git blob sha1; names the blob in the cache */
  etag?: string;
}

export interface RepoListing {
  /** the commit the revision points to; names the snapshot folder */
  commit: string;
  files: RepoFileEntry[];
}

export interface HubSource {
  readonly name: 'huggingface' | 'modelscope';
  readonly defaultRevision: string;
  /** request headers (Authorization when a token is set) */
  readonly headers: Record<string, string>;
  list(repoId: string, revision: string, http: HttpSettings): Promise<RepoListing>;
  fileUrl(repoId: string, commit: string, file: string): string;
  /** size and etag of a file the listing gave no hash for */
  fileInfo(repoId: string, commit: string, file: string, http: HttpSettings): Promise<{ etag?: string; size?: number }>;
}
