/**
 * A local stand-in for the Hugging Face Hub (and ModelScope's file API) for the hub tests:
 * revision listing with blob hashes, `resolve` URLs that answer small files directly (git sha1
 * ETag) and redirect LFS files to a CDN path on another host name ([::1] instead of 127.0.0.1),
 * Range requests, a gated mode (401 without the right token), and hooks that cut a transfer
 * midway or corrupt a file.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  data: Buffer;
  lfs: boolean;
}

export interface FakeHubOptions {
  repoId: string;
  commit: string;
  files: Record<string, FakeFile>;
  /** required Bearer token, when gated */
  token?: string;
}

export interface SeenRequest {
  method: string;
  path: string;
  host: string;
  range?: string;
  authorization?: string;
}

export interface FakeHub {
  endpoint: string;
  requests: SeenRequest[];
  /** cut the next transfer of this file after this many bytes */
  cutNext: Map<string, number>;
  /** serve these files with one byte flipped (the listing keeps the true hash) */
  corrupt: Set<string>;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

export async function startFakeHub(o: FakeHubOptions): Promise<FakeHub> {
  const requests: SeenRequest[] = [];
  const cutNext = new Map<string, number>();
  const corrupt = new Set<string>();
  const etagOf = (f: FakeFile) => (f.lfs ? sha256(f.data) : gitSha1(f.data));
  let port = 0;

  const serveBytes = (req: http.IncomingMessage, res: http.ServerResponse, name: string, headers: Record<string, string>) => {
    let data = o.files[name]!.data;
    if (corrupt.has(name)) {
      data = Buffer.from(data);
      data[data.length >> 1] ^= 0xff;
    }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) start = Number(m[1]);
    if (start > data.length) {
      res.writeHead(416, { 'content-range': `bytes */${data.length}` });
      return res.end();
    }
    const body = data.subarray(start);
    const h = { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' };
    if (m) res.writeHead(206, { ...h, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
    else res.writeHead(200, h);
    if (req.method === 'HEAD') return res.end();
    const cut = cutNext.get(name);
    if (cut !== undefined) {
      cutNext.delete(name);
      res.write(body.subarray(0, cut), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  };

  const authorized = (req: http.IncomingMessage) => o.token === undefined || req.headers.authorization === `Bearer ${o.token}`;
  const deny = (res: http.ServerResponse) => {
    res.writeHead(401, { 'x-error-code': 'GatedRepo', 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'Access to this model is restricted.' }));
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push({
      method: req.method!,
      path: url.pathname + url.search,
      host: req.headers.host ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
    const p = decodeURIComponent(url.pathname);
    const repo = o.repoId;
    if (p === `/api/models/${repo}/revision/main` || p === `/api/models/${repo}/revision/${o.commit}`) {
      if (!authorized(req)) return deny(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          id: repo,
          sha: o.commit,
          siblings: Object.entries(o.files).map(([rfilename, f]) => ({
            rfilename,
            size: f.data.length,
            blobId: gitSha1(f.data),
            ...(f.lfs ? { lfs: { sha256: sha256(f.data), size: f.data.length, pointerSize: 134 } } : {}),
          })),
        }),
      );
    }
    if (p.startsWith(`/api/models/${repo}/revision/`)) {
      res.writeHead(404, { 'x-error-code': 'RevisionNotFound' });
      return res.end();
    }
    const resolvePrefix = `/${repo}/resolve/${o.commit}/`;
    if (p.startsWith(resolvePrefix)) {
      if (!authorized(req)) return deny(res);
      const name = p.slice(resolvePrefix.length);
      const f = o.files[name];
      if (!f) {
        res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
        return res.end();
      }
      const common = { 'x-repo-commit': o.commit };
      if (f.lfs) {
        res.writeHead(302, {
          ...common,
          location: `http://[::1]:${port}/cdn/${sha256(f.data)}?name=${encodeURIComponent(name)}`,
          'x-linked-etag': `"${sha256(f.data)}"`,
          'x-linked-size': String(f.data.length),
          etag: `"${gitSha1(f.data)}"`,
        });
        return res.end();
      }
      return serveBytes(req, res, name, { ...common, etag: `"${etagOf(f)}"` });
    }
    if (p.startsWith('/cdn/')) return serveBytes(req, res, url.searchParams.get('name')!, {});
    // ModelScope's API
    if (p === `/api/v1/models/${repo}/repo/files`) {
      if (!authorized(req)) return deny(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          Code: 200,
          Data: {
            Files: [
              { Name: 'sub', Path: 'sub', Type: 'tree', Size: 0 },
              ...Object.entries(o.files).map(([Path, f]) => ({ Name: Path, Path, Type: 'blob', Size: f.data.length, Sha256: sha256(f.data), Revision: o.commit })),
            ],
          },
        }),
      );
    }
    if (p === `/api/v1/models/${repo}/repo`) {
      if (!authorized(req)) return deny(res);
      const name = url.searchParams.get('FilePath')!;
      if (!o.files[name]) {
        res.writeHead(404);
        return res.end();
      }
      return serveBytes(req, res, name, {});
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '::', r));
  port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    cutNext,
    corrupt,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
