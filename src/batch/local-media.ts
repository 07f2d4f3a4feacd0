/**
 * Local media in a batch line: a worker on another machine reads it, so it must be an absolute
 * path (or a file:// URL) inside the folders workers are allowed to read. Judged on the path as
 * written, without touching the file system (the workers check again, symlinks resolved, when
 * they read it), so a bad path is refused at submission instead of failing hours later.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../errors.ts';
import { lexicallyAllowed } from '../media/local-file.ts';
import { classifySource } from '../media/source.ts';

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const first = (part: Record<string, unknown>, keys: string[]): unknown => keys.map((k) => part[k]).find((v) => v !== undefined && v !== null);

/** The media sources a content part names (strings only; anything else was judged by normalization). */
function sourcesOf(part: Record<string, unknown>): string[] {
  const url = (v: unknown) => (typeof v === 'string' ? v : isRecord(v) ? v.url : undefined);
  let v: unknown;
  switch (part.type) {
    case 'image':
      v = first(part, ['image', 'url', 'path']);
      break;
    case 'video':
      v = first(part, ['video', 'url', 'path']);
      break;
    case 'pdf':
      v = first(part, ['pdf', 'url', 'path']);
      break;
    case 'image_url':
      v = url(part.image_url);
      break;
    case 'video_url':
      v = url(part.video_url);
      break;
    default:
      return [];
  }
  const all = Array.isArray(v) ? v : [v];
  return all.filter((s): s is string => typeof s === 'string');
}

const shown = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}…` : s);

/** Throws a MESSAGE_INVALID naming the part when a local source is relative or outside `allowedDirs`. */
export function checkLocalSources(messages: readonly unknown[], allowedDirs: readonly string[]): void {
  messages.forEach((msg, m) => {
    if (!isRecord(msg) || !Array.isArray(msg.content)) return;
    msg.content.forEach((part, p) => {
      if (!isRecord(part)) return;
      for (const source of sourcesOf(part)) {
        const where = `messages[${m}].content[${p}]`;
        const fail = (why: string): never => {
          throw new QvlError('MEDIA_FORBIDDEN', `${where}: ${shown(source)}: ${why}`, { message: m, part: p, param: where });
        };
        let type;
        try {
          type = classifySource(source, allowedDirs);
        } catch (e) {
          fail((e as Error).message.replace(/^.*?: /, ''));
        }
        if (type !== 'path' && type !== 'file-url') continue;
        if (allowedDirs.length === 0) fail('local files are not readable here (workers and this check need --allowed-local-media-path)');
        let file = source;
        if (type === 'file-url') {
          try {
            file = fileURLToPath(source);
          } catch {
            fail('not a usable file:// URL');
          }
        } else if (!path.isAbsolute(source)) fail('a local path in a batch must be absolute (workers may run in other folders or on other machines)');
        if (!lexicallyAllowed(file, allowedDirs)) fail('outside the folders local media may be read from (--allowed-local-media-path)');
      }
    });
  });
}
