/**
 * Strict Base64 and `data:` URI decoding. Node's own Base64 decoder skips characters it does not
 * know and so turns a typo into silently wrong bytes; here any stray character, misplaced
 * padding or non-zero leftover bits is an error that says where it is.
 */
import { QvlError } from '../errors.ts';

const STANDARD = /^[A-Za-z0-9+/]*$/;
const URL_SAFE = /^[A-Za-z0-9\-_]*$/;

/** Decodes standard or URL-safe Base64 (one alphabet, not mixed); whitespace between characters is allowed. */
export function decodeBase64Strict(text: string, label = 'Base64 data'): Uint8Array {
  const compact = text.replace(/[\r\n\t ]+/g, '');
  const body = compact.replace(/=+$/, '');
  const padding = compact.length - body.length;
  const fail = (why: string): never => {
    throw new QvlError('MEDIA_SOURCE', `${label} is not valid Base64: ${why}`, { source: label, reason: why });
  };
  if (compact.length === 0) fail('it is empty');
  const urlSafe = !STANDARD.test(body);
  if (urlSafe && !URL_SAFE.test(body)) {
    const at = body.search(/[^A-Za-z0-9+/\-_]/);
    const bad = at >= 0 ? body[at]! : body.match(/[+/]/) ? 'a mix of the standard and URL-safe alphabets' : '?';
    fail(at >= 0 ? `unexpected character ${JSON.stringify(bad)} at offset ${at}` : bad);
  }
  if (padding > 2) fail(`${padding} padding characters (at most 2 are allowed)`);
  if (body.length % 4 === 1) fail(`length ${body.length} leaves a dangling character`);
  if (padding > 0 && (body.length + padding) % 4 !== 0) fail('padding does not complete a 4-character group');
  const bytes = Buffer.from(urlSafe ? body.replace(/-/g, '+').replace(/_/g, '/') : body, 'base64');
  // A canonical encoding has zero bits after the last byte; anything else was not produced by an encoder.
  const canonical = bytes.toString('base64').replace(/=+$/, '');
  if (canonical !== (urlSafe ? body.replace(/-/g, '+').replace(/_/g, '/') : body)) fail('the last character carries non-zero leftover bits');
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export interface DataUri {
  mimeType: string;
  bytes: Uint8Array;
}

/** Parses `data:[<type>][;param]*[;base64],<payload>` (RFC 2397). */
export function parseDataUri(uri: string, maxBytes = Number.POSITIVE_INFINITY): DataUri {
  const label = `data URI (${uri.length} characters)`;
  if (!/^data:/i.test(uri)) throw new QvlError('MEDIA_SOURCE', `${label} does not start with "data:"`, { source: label });
  const comma = uri.indexOf(',');
  if (comma < 0) throw new QvlError('MEDIA_SOURCE', `${label} has no "," before its payload`, { source: label });
  const params = uri.slice(5, comma).split(';').map((p) => p.trim());
  const isBase64 = params.length > 1 && params[params.length - 1]!.toLowerCase() === 'base64';
  if (isBase64) params.pop();
  const mimeType = (params[0] || 'text/plain').toLowerCase();
  const payload = uri.slice(comma + 1);
  // Base64 expands 3 bytes into 4 characters: refuse before decoding anything that cannot fit.
  const estimate = isBase64 ? Math.floor((payload.length * 3) / 4) : payload.length;
  if (estimate > maxBytes + 3) {
    throw new QvlError('MEDIA_TOO_LARGE', `${label} holds about ${estimate} bytes, over the limit of ${maxBytes}`, {
      source: label,
      limit: maxBytes,
    });
  }
  let bytes: Uint8Array;
  if (isBase64) {
    bytes = decodeBase64Strict(payload, `${label} payload`);
  } else {
    bytes = percentDecode(payload, label);
  }
  if (bytes.byteLength > maxBytes) {
    throw new QvlError('MEDIA_TOO_LARGE', `${label} holds ${bytes.byteLength} bytes, over the limit of ${maxBytes}`, {
      source: label,
      limit: maxBytes,
    });
  }
  return { mimeType, bytes };
}

/** Percent-decoding to bytes (not to text: a data URI may carry binary as %XX escapes). */
function percentDecode(text: string, label: string): Uint8Array {
  const raw = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== 0x25) {
      out[n++] = c;
      continue;
    }
    const hex = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
      throw new QvlError('MEDIA_SOURCE', `${label} has a malformed percent escape at offset ${i}`, { source: label });
    }
    out[n++] = parseInt(hex, 16);
    i += 2;
  }
  return new Uint8Array(out.buffer, out.byteOffset, n);
}
