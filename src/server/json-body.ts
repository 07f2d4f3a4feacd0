/**
 * Request bodies as JSON, with the nesting bounded before anything walks the value: deeply nested
 * arrays cost a recursive walker (structured cloning, schema checks) its stack.
 */
import { HttpError } from './errors.ts';

export const MAX_JSON_DEPTH = 64;

/** The deepest nesting of arrays and objects in JSON text (strings skipped); stops counting past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

export function parseJsonBody(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (jsonDepth(text, maxDepth) > maxDepth) {
    throw new HttpError(400, `the request body nests arrays and objects more than ${maxDepth} levels deep`, { code: 'invalid_json' });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}`, { code: 'invalid_json' });
  }
}
