/**
 * A jinja environment that behaves like the one transformers builds for chat templates
 * (`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` plus its globals
 * `raise_exception`, `strftime_now` and its own `tojson` filter), on top of
 * @huggingface/jinja (whose lexer already applies trim_blocks and lstrip_blocks).
 *
 * The library's own `tojson` prints floats the JavaScript way (0.00001 instead of Python's
 * 1e-05) and turns undefined into null; here `tojson` is Python's json.dumps (see py-json.ts).
 */
import { Environment, Interpreter, parse, tokenize } from '@huggingface/jinja';
import { pyJsonDumps, type PyJsonOptions, type RuntimeLike } from './py-json.ts';

export type CompiledTemplate = ReturnType<typeof parse>;

/** Thrown by the template's own `raise_exception(message)`. */
export class TemplateRaisedError extends Error {}

export function compileTemplate(source: string): CompiledTemplate {
  return parse(tokenize(source, { lstrip_blocks: true, trim_blocks: true }));
}

export function renderTemplate(program: CompiledTemplate, context: Record<string, unknown>): string {
  const env = new Environment();
  // The same globals transformers and @huggingface/jinja provide.
  env.set('false', false);
  env.set('true', true);
  env.set('none', null);
  env.set('False', false);
  env.set('True', true);
  env.set('None', null);
  env.set('raise_exception', (message: unknown) => {
    throw new TemplateRaisedError(String(message));
  });
  env.set('range', pyRange);
  env.set('strftime_now', (format: unknown) => strftime(new Date(), String(format)));
  for (const [key, value] of Object.entries(context)) env.set(key, value);

  const interpreter = new Interpreter(env);
  installPythonToJson(interpreter);
  const result = interpreter.run(program) as RuntimeLike;
  return String(result.value);
}

/** Internal interpreter hooks that the library's type declarations mark private. */
interface InterpreterInternals {
  applyFilter(operand: RuntimeLike, filterNode: FilterNode, environment: Environment): RuntimeLike;
  evaluateArguments(args: unknown[], environment: Environment): [RuntimeLike[], Map<string, RuntimeLike>];
}

interface FilterNode {
  type: string;
  value?: string;
  callee?: { type: string; value?: string };
  args?: unknown[];
}

/** Routes `x | tojson` and `x | tojson(...)` of this interpreter instance to Python's json.dumps. */
function installPythonToJson(interpreter: Interpreter): void {
  const internals = interpreter as unknown as InterpreterInternals;
  // private methods of @huggingface/jinja 0.5.x (package.json pins the version): say so plainly
  // if another version renamed them, rather than failing somewhere inside a render
  if (typeof internals.applyFilter !== 'function' || typeof internals.evaluateArguments !== 'function') {
    throw new Error('@huggingface/jinja: Interpreter.applyFilter / evaluateArguments not found; src/template/hf-jinja.ts patches them for Python-compatible tojson and needs updating for this version');
  }
  const original = internals.applyFilter.bind(interpreter);
  internals.applyFilter = (operand, filterNode, environment) => {
    if (filterNode.type === 'Identifier' && filterNode.value === 'tojson') {
      return stringValue(pyJsonDumps(operand, {}));
    }
    if (
      filterNode.type === 'CallExpression' &&
      filterNode.callee?.type === 'Identifier' &&
      filterNode.callee.value === 'tojson'
    ) {
      const [positional, keyword] = internals.evaluateArguments(filterNode.args ?? [], environment);
      return stringValue(pyJsonDumps(operand, toJsonOptions(positional, keyword)));
    }
    return original(operand, filterNode, environment);
  };
}

/** transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
function toJsonOptions(positional: RuntimeLike[], keyword: Map<string, RuntimeLike>): PyJsonOptions {
  const names = ['ensure_ascii', 'indent', 'separators', 'sort_keys'];
  if (positional.length > names.length) throw new Error('tojson() takes at most 4 arguments');
  const args = new Map<string, RuntimeLike>();
  positional.forEach((v, i) => args.set(names[i]!, v));
  for (const [k, v] of keyword) {
    if (!names.includes(k)) throw new Error(`tojson() got an unexpected keyword argument '${k}'`);
    if (args.has(k)) throw new Error(`tojson() got multiple values for argument '${k}'`);
    args.set(k, v);
  }
  const opts: PyJsonOptions = {};
  const ensureAscii = args.get('ensure_ascii');
  if (ensureAscii !== undefined) opts.ensureAscii = truthy(ensureAscii);
  const sortKeys = args.get('sort_keys');
  if (sortKeys !== undefined) opts.sortKeys = truthy(sortKeys);
  const indent = args.get('indent');
  if (indent !== undefined && indent.type !== 'NullValue') {
    if (indent.type === 'IntegerValue' || indent.type === 'StringValue') opts.indent = indent.value as number | string;
    else throw new Error('tojson(): indent must be an integer, a string or None');
  }
  const separators = args.get('separators');
  if (separators !== undefined && separators.type !== 'NullValue') {
    const parts = separators.value as RuntimeLike[];
    if (
      !Array.isArray(parts) ||
      parts.length !== 2 ||
      parts.some((p) => p.type !== 'StringValue')
    ) {
      throw new Error('tojson(): separators must be a pair of strings');
    }
    opts.separators = [parts[0]!.value as string, parts[1]!.value as string];
  }
  return opts;
}

function truthy(v: RuntimeLike): boolean {
  switch (v.type) {
    case 'NullValue':
    case 'UndefinedValue':
      return false;
    case 'StringValue':
      return (v.value as string).length > 0;
    case 'ArrayValue':
    case 'TupleValue':
      return (v.value as unknown[]).length > 0;
    case 'ObjectValue':
      return (v.value as Map<string, unknown>).size > 0;
    default:
      return Boolean(v.value);
  }
}

/** The library's StringValue class, taken from its public conversion path (it is not exported). */
const StringValueClass = (new Environment().set('probe', '') as object).constructor as new (s: string) => RuntimeLike;

function stringValue(s: string): RuntimeLike {
  return new StringValueClass(s);
}

/** Python's range(stop) / range(start, stop[, step]). */
function pyRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  if (step > 0) for (let i = start; i < stop; i += step) out.push(i);
  else for (let i = start; i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's datetime.strftime for the directives templates use, in the C locale. */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const dayOfYear = Math.floor(
    (Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86400000,
  ) + 1;
  return format.replace(/%(-?)([a-zA-Z%])/g, (token, noPad: string, d: string) => {
    const p = (n: number, w = 2) => (noPad ? String(n) : pad(n, w));
    switch (d) {
      case 'Y':
        return String(date.getFullYear());
      case 'y':
        return pad(date.getFullYear() % 100);
      case 'm':
        return p(date.getMonth() + 1);
      case 'd':
        return p(date.getDate());
      case 'j':
        return p(dayOfYear, 3);
      case 'H':
        return p(date.getHours());
      case 'I':
        return p(date.getHours() % 12 === 0 ? 12 : date.getHours() % 12);
      case 'M':
        return p(date.getMinutes());
      case 'S':
        return p(date.getSeconds());
      case 'p':
        return date.getHours() < 12 ? 'AM' : 'PM';
      case 'B':
        return MONTHS[date.getMonth()]!;
      case 'b':
        return MONTHS[date.getMonth()]!.slice(0, 3);
      case 'A':
        return DAYS[date.getDay()]!;
      case 'a':
        return DAYS[date.getDay()]!.slice(0, 3);
      case '%':
        return '%';
      default:
        return token;
    }
  });
}
