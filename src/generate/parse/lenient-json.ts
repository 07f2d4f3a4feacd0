/**
 * Finds JSON objects inside free text: model output wraps JSON in prose, in ```json fences, or is
 * cut off mid-array. Every balanced `{…}` span (strings respected) is tried; spans that do not
 * parse as they are get one repair (trailing commas removed). Nested objects are found too when
 * their parent does not qualify.
 */

/** End index (exclusive) of the balanced object starting at `start` (text[start] === '{'), or -1. */
export function balancedObjectEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return c === '}' ? i + 1 : -1;
      if (depth < 0) return -1;
    }
  }
  return -1;
}

function tryParse(span: string): unknown {
  try {
    return JSON.parse(span);
  } catch {
    try {
      return JSON.parse(span.replace(/,\s*([}\]])/g, '$1'));
    } catch {
      return undefined;
    }
  }
}

/**
 * Every JSON object in `text` for which `accept` returns true, in order of appearance. Objects
 * that parse but are not accepted are searched inside for accepted ones.
 */
export function findJsonObjects(text: string, accept: (o: Record<string, unknown>) => boolean, limit = 10_000): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let i = text.indexOf('{');
  while (i >= 0 && out.length < limit) {
    const end = balancedObjectEnd(text, i);
    if (end > 0) {
      const v = tryParse(text.slice(i, end));
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && accept(v as Record<string, unknown>)) {
        out.push(v as Record<string, unknown>);
        i = text.indexOf('{', end);
        continue;
      }
    }
    i = text.indexOf('{', i + 1);
  }
  return out;
}
