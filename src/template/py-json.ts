/**
 * Python's `json.dumps` output for jinja runtime values, as transformers' chat-template
 * `tojson` filter produces it: `json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False)` by default, i.e. ", " and ": " separators, raw non-ASCII,
 * no HTML escaping, dict insertion order, and Python's float repr (1e-05, 1e+16, 2.0).
 *
 * Values are the interpreter's runtime values of @huggingface/jinja, recognised by their
 * `type` tag (the classes themselves are not exported by the library).
 */

export interface RuntimeLike {
  type: string;
  value: unknown;
}

export interface PyJsonOptions {
  ensureAscii?: boolean;
  /** null: one line. A number of spaces (negative = none) or a literal indent string. */
  indent?: number | string | null;
  /** [item separator, key separator]; Python's defaults depend on `indent`. */
  separators?: [string, string] | null;
  sortKeys?: boolean;
}

export class PyJsonError extends Error {}

export function pyJsonDumps(value: RuntimeLike, opts: PyJsonOptions = {}): string {
  const indentUnit =
    opts.indent === null || opts.indent === undefined
      ? null
      : typeof opts.indent === 'number'
        ? ' '.repeat(Math.max(0, opts.indent))
        : opts.indent;
  const [itemSep, keySep] = opts.separators ?? (indentUnit === null ? [', ', ': '] : [',', ': ']);
  const ensureAscii = opts.ensureAscii === true;
  const sortKeys = opts.sortKeys === true;

  const str = (s: string): string => (ensureAscii ? asciiOnly(JSON.stringify(s)) : JSON.stringify(s));

  const walk = (v: RuntimeLike, level: number): string => {
    switch (v.type) {
      case 'NullValue':
        return 'null';
      case 'BooleanValue':
        return v.value ? 'true' : 'false';
      case 'IntegerValue':
        return pyIntRepr(v.value as number);
      case 'FloatValue':
        return pyFloatRepr(v.value as number);
      case 'StringValue':
        return str(v.value as string);
      case 'ArrayValue':
      case 'TupleValue': {
        const items = v.value as RuntimeLike[];
        if (items.length === 0) return '[]';
        return wrap('[', ']', items.map((x) => walk(x, level + 1)), level);
      }
      case 'ObjectValue':
      case 'KeywordArgumentsValue': {
        let entries = [...(v.value as Map<string, RuntimeLike>).entries()];
        if (entries.length === 0) return '{}';
        if (sortKeys) entries = entries.sort(([a], [b]) => compareCodePoints(a, b));
        return wrap(
          '{',
          '}',
          entries.map(([k, x]) => `${str(k)}${keySep}${walk(x, level + 1)}`),
          level,
        );
      }
      case 'UndefinedValue':
        throw new PyJsonError('Object of type Undefined is not JSON serializable');
      default:
        throw new PyJsonError(`Object of type ${v.type.replace(/Value$/, '')} is not JSON serializable`);
    }
  };

  const wrap = (open: string, close: string, parts: string[], level: number): string => {
    if (indentUnit === null) return open + parts.join(itemSep) + close;
    const inner = '\n' + indentUnit.repeat(level + 1);
    return open + inner + parts.join(itemSep + inner) + '\n' + indentUnit.repeat(level) + close;
  };

  return walk(value, 0);
}

/** Python `str(int)`; beyond 2^53 the double is printed exactly, as a Python int of it would be. */
export function pyIntRepr(n: number): string {
  if (!Number.isFinite(n)) return pyFloatRepr(n);
  if (Object.is(n, -0)) return '0';
  return Number.isSafeInteger(n) ? String(n) : BigInt(n).toString();
}

/**
 * Python `repr(float)`: the shortest round-trip digits (the same digits JavaScript picks),
 * fixed notation for 1e-4 <= |x| < 1e16 with at least one decimal, else d.ddde±XX.
 */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, expPart] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const decpt = Number(expPart) + 1; // x = 0.digits × 10^decpt
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
    if (decpt >= digits.length) return `${sign}${digits}${'0'.repeat(decpt - digits.length)}.0`;
    return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  }
  const e = decpt - 1;
  const frac = digits.length > 1 ? `.${digits.slice(1)}` : '';
  return `${sign}${digits[0]}${frac}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
}

/** Python's ensure_ascii: every code unit outside printable ASCII as \uXXXX (surrogates kept as pairs). */
function asciiOnly(json: string): string {
  return json.replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Python compares str by code point; JavaScript's default sort compares UTF-16 units. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
