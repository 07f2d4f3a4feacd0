/** Where media may come from and how much of it: the safety limits of every media source. */

export type MediaKind = 'image' | 'video' | 'pdf';

export interface MediaSourceOptions {
  /**
   * Local files. Undefined: any local path may be read (library and CLI use) but `file://` URLs
   * are refused. A list: plain paths and `file://` URLs must lie inside one of these directories
   * after symlinks and `..` are resolved. An empty list refuses every local file (servers).
   */
  allowedLocalDirs?: readonly string[];
  /** connect to loopback, private and link-local addresses (default false) */
  allowPrivateNetwork?: boolean;
  /** exact private addresses that may be contacted anyway (e.g. one intranet media host) */
  allowedAddresses?: readonly string[];
  /** the most bytes one source may have (default: 64 MiB images and PDFs, 1 GiB video) */
  maxBytes?: number;
  /** default 10 s */
  connectTimeoutMs?: number;
  /** longest silence while downloading, default 30 s */
  readTimeoutMs?: number;
  /** whole download, default 5 min */
  totalTimeoutMs?: number;
  /** default 5 */
  maxRedirects?: number;
  /** Content-Type prefixes a URL may answer with (default depends on the kind of media) */
  contentTypes?: readonly string[];
  /** extra request headers for http(s) sources */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export const MIB = 1024 * 1024;

/** Pillow's `Image.MAX_IMAGE_PIXELS`: past it Pillow warns; we refuse (decompression bombs). */
export const DEFAULT_MAX_INPUT_PIXELS = 89_478_485;

export const DEFAULT_MAX_BYTES: Record<MediaKind, number> = {
  image: 64 * MIB,
  video: 1024 * MIB,
  pdf: 64 * MIB,
};

/** Servers often label media as octet-stream; anything else (HTML error pages, JSON) is refused. */
export const DEFAULT_CONTENT_TYPES: Record<MediaKind, readonly string[]> = {
  image: ['image/', 'application/octet-stream', 'binary/octet-stream'],
  video: ['video/', 'image/gif', 'image/webp', 'application/mp4', 'application/octet-stream', 'binary/octet-stream'],
  pdf: ['application/pdf', 'application/x-pdf', 'application/octet-stream', 'binary/octet-stream'],
};

export interface ResolvedLimits {
  maxBytes: number;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  totalTimeoutMs: number;
  maxRedirects: number;
  allowPrivateNetwork: boolean;
  allowedAddresses: readonly string[];
  contentTypes: readonly string[];
}

export function resolveLimits(kind: MediaKind, o: MediaSourceOptions = {}): ResolvedLimits {
  return {
    maxBytes: o.maxBytes ?? DEFAULT_MAX_BYTES[kind],
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    readTimeoutMs: o.readTimeoutMs ?? 30_000,
    totalTimeoutMs: o.totalTimeoutMs ?? 300_000,
    maxRedirects: o.maxRedirects ?? 5,
    allowPrivateNetwork: o.allowPrivateNetwork ?? false,
    allowedAddresses: o.allowedAddresses ?? [],
    contentTypes: o.contentTypes ?? DEFAULT_CONTENT_TYPES[kind],
  };
}
