/**
 * A JSON Schema (the subset constrained decoding can enforce) → a grammar tree for the JSON
 * automaton. Supported: type (one or a list), properties / required / additionalProperties,
 * items / minItems / maxItems, minLength / maxLength, enum / const, anyOf / oneOf whose
 * alternatives start differently (e.g. string or null), and local $ref into $defs/definitions.
 * Annotations (title, description, default, examples, …) are ignored. Anything else is refused
 * with the list of keywords, so a schema is never silently enforced only in part.
 *
 * Objects are generated with their properties in schema order; optional ones may be left out and
 * no undeclared property is ever produced (always valid, whatever additionalProperties says).
 */
import { QvlError } from '../../errors.ts';

export type JsonNode =
  | { kind: 'any'; depth: number }
  | { kind: 'object'; props: JsonProp[]; free: boolean; depth: number }
  | { kind: 'array'; items: JsonNode; min: number; max: number }
  | { kind: 'string'; min: number; max: number }
  | { kind: 'number'; integer: boolean }
  | { kind: 'literal'; values: Uint8Array[] }
  | { kind: 'union'; options: JsonNode[] };

export interface JsonProp {
  name: string;
  /** the key as it must be written, quotes included */
  key: Uint8Array;
  node: JsonNode;
  required: boolean;
}

/** How deep free-form values (json_object mode, objects without properties) may nest. */
export const FREE_DEPTH = 12;

const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  'example',
  '$schema',
  '$id',
  '$comment',
  '$defs',
  'definitions',
  'deprecated',
  'readOnly',
  'writeOnly',
  'strict',
  'name',
]);

const HANDLED = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength', 'enum', 'const', 'anyOf', 'oneOf', '$ref']);

const utf8 = new TextEncoder();

export const literalBytes = (v: unknown): Uint8Array => utf8.encode(JSON.stringify(v));

/** Any JSON value, nesting at most `depth` containers. */
export function anyNode(depth = FREE_DEPTH): JsonNode {
  return { kind: 'any', depth };
}

/** json_object mode: any object. */
export function anyObjectNode(): JsonNode {
  return { kind: 'object', props: [], free: true, depth: FREE_DEPTH - 1 };
}

/** Lists the keywords of `schema` (at any depth) that cannot be enforced; empty when all can. */
export function unsupportedKeywords(schema: unknown): string[] {
  const found = new Set<string>();
  const walk = (s: unknown, path: string) => {
    if (s === true || s === false || s === null || typeof s !== 'object' || Array.isArray(s)) return;
    for (const [k, v] of Object.entries(s as Record<string, unknown>)) {
      if (ANNOTATIONS.has(k) && k !== '$defs' && k !== 'definitions') continue;
      if (k === '$defs' || k === 'definitions') {
        if (v && typeof v === 'object') for (const [n, d] of Object.entries(v)) walk(d, `${path}/${k}/${n}`);
        continue;
      }
      if (!HANDLED.has(k)) {
        found.add(`${k} (at ${path || '/'})`);
        continue;
      }
      if (k === 'properties' && v && typeof v === 'object') for (const [n, d] of Object.entries(v)) walk(d, `${path}/properties/${n}`);
      // additionalProperties is never used (no undeclared property is generated), so not checked
      if (k === 'items') walk(v, `${path}/${k}`);
      if ((k === 'anyOf' || k === 'oneOf') && Array.isArray(v)) v.forEach((d, i) => walk(d, `${path}/${k}/${i}`));
    }
  };
  walk(schema, '');
  return [...found];
}

function bad(message: string, where: string): never {
  throw new QvlError('OPTION_INVALID', `JSON schema${where ? ` at ${where}` : ''}: ${message}`, { at: where || '/' });
}

function nonNegInt(v: unknown, name: string, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(`${name} must be a non-negative integer`, where);
  return v;
}

/** The first bytes a value of `node` can start with (to tell union alternatives apart). */
export function firstBytes(node: JsonNode): Set<number> {
  const s = new Set<number>();
  const add = (chars: string) => {
    for (const c of chars) s.add(c.charCodeAt(0));
  };
  switch (node.kind) {
    case 'any':
      add('"-0123456789tfn');
      if (node.depth > 0) add('{[');
      break;
    case 'object':
      add('{');
      break;
    case 'array':
      add('[');
      break;
    case 'string':
      add('"');
      break;
    case 'number':
      add('-0123456789');
      break;
    case 'literal':
      for (const v of node.values) s.add(v[0]!);
      break;
    case 'union':
      for (const o of node.options) for (const b of firstBytes(o)) s.add(b);
      break;
  }
  return s;
}

function union(options: JsonNode[], where: string): JsonNode {
  if (options.length === 1) return options[0]!;
  const seen = new Set<number>();
  for (const o of options) {
    for (const b of firstBytes(o)) {
      if (seen.has(b)) bad(`alternatives that can start with the same character (${JSON.stringify(String.fromCharCode(b))}) are not supported`, where);
      seen.add(b);
    }
  }
  return { kind: 'union', options };
}

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPES)[number];

/** Compiles a JSON Schema into the automaton's grammar. Throws OPTION_INVALID naming the problem. */
export function compileJsonSchema(schema: unknown): JsonNode {
  const unsupported = unsupportedKeywords(schema);
  if (unsupported.length > 0) {
    throw new QvlError('OPTION_INVALID', `JSON schema uses keywords that constrained decoding cannot enforce: ${unsupported.join(', ')}`, {
      unsupported,
    });
  }
  const root = schema as Record<string, unknown>;
  const defs = { ...(isObj(root?.definitions) ? root.definitions : {}), ...(isObj(root?.$defs) ? root.$defs : {}) } as Record<string, unknown>;
  const resolving = new Set<string>();

  const compile = (s: unknown, where: string, depth: number): JsonNode => {
    if (s === true || (isObj(s) && Object.keys(s).every((k) => ANNOTATIONS.has(k)))) return anyNode(Math.max(0, FREE_DEPTH - depth));
    if (s === false) bad('false (nothing matches) cannot be generated', where);
    if (!isObj(s)) bad('expected a schema object', where);
    if (depth > 64) bad('nested too deeply', where);
    if (typeof s.$ref === 'string') {
      const m = /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(s.$ref);
      if (!m) bad(`$ref ${JSON.stringify(s.$ref)} is not supported (only #/$defs/… and #/definitions/…)`, where);
      const name = decodeURIComponent(m[1]!.replace(/~1/g, '/').replace(/~0/g, '~'));
      if (!(name in defs)) bad(`$ref ${JSON.stringify(s.$ref)} points nowhere`, where);
      if (resolving.has(name)) bad(`recursive $ref ${JSON.stringify(s.$ref)} is not supported`, where);
      resolving.add(name);
      try {
        return compile(defs[name], `${where}/$ref(${name})`, depth + 1);
      } finally {
        resolving.delete(name);
      }
    }
    if ('const' in s) return { kind: 'literal', values: [literalBytes(s.const)] };
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0) bad('enum must be a non-empty array', where);
      const texts = [...new Set(s.enum.map((v) => JSON.stringify(v)))];
      return { kind: 'literal', values: texts.map((t) => utf8.encode(t)) };
    }
    const alts = s.anyOf ?? s.oneOf;
    if (alts !== undefined) {
      if (!Array.isArray(alts) || alts.length === 0) bad('anyOf/oneOf must be a non-empty array', where);
      return union(
        alts.map((a, i) => compile(a, `${where}/${s.anyOf ? 'anyOf' : 'oneOf'}/${i}`, depth + 1)),
        where,
      );
    }
    let types: TypeName[];
    if (s.type === undefined) {
      if (s.properties !== undefined || s.required !== undefined) types = ['object'];
      else if (s.items !== undefined) types = ['array'];
      else if (s.minLength !== undefined || s.maxLength !== undefined) types = ['string'];
      else return anyNode(Math.max(0, FREE_DEPTH - depth));
    } else {
      const list = Array.isArray(s.type) ? s.type : [s.type];
      for (const t of list) if (!TYPES.includes(t as TypeName)) bad(`unknown type ${JSON.stringify(t)}`, where);
      types = [...new Set(list as TypeName[])];
      if (types.includes('number')) types = types.filter((t) => t !== 'integer');
    }
    return union(
      types.map((t) => compileType(t, s, where, depth)),
      where,
    );
  };

  const compileType = (t: TypeName, s: Record<string, unknown>, where: string, depth: number): JsonNode => {
    switch (t) {
      case 'null':
        return { kind: 'literal', values: [literalBytes(null)] };
      case 'boolean':
        return { kind: 'literal', values: [literalBytes(true), literalBytes(false)] };
      case 'number':
      case 'integer':
        return { kind: 'number', integer: t === 'integer' };
      case 'string': {
        const min = nonNegInt(s.minLength, 'minLength', where) ?? 0;
        const max = nonNegInt(s.maxLength, 'maxLength', where) ?? Infinity;
        if (min > max) bad(`minLength ${min} is larger than maxLength ${max}`, where);
        return { kind: 'string', min, max };
      }
      case 'array': {
        const min = nonNegInt(s.minItems, 'minItems', where) ?? 0;
        const max = nonNegInt(s.maxItems, 'maxItems', where) ?? Infinity;
        if (min > max) bad(`minItems ${min} is larger than maxItems ${max}`, where);
        const items = s.items === undefined ? anyNode(Math.max(0, FREE_DEPTH - depth - 1)) : compile(s.items, `${where}/items`, depth + 1);
        return { kind: 'array', items, min, max };
      }
      case 'object': {
        const propsSchema = s.properties === undefined ? {} : s.properties;
        if (!isObj(propsSchema)) bad('properties must be an object', where);
        const required = s.required === undefined ? [] : s.required;
        if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) bad('required must be an array of names', where);
        for (const r of required) if (!(r in propsSchema)) bad(`required property ${JSON.stringify(r)} is not among the properties`, where);
        const props: JsonProp[] = Object.entries(propsSchema).map(([name, sub]) => ({
          name,
          key: literalBytes(name),
          node: compile(sub, `${where}/properties/${name}`, depth + 1),
          required: (required as string[]).includes(name),
        }));
        // No declared properties: any object (keys and values free), as JSON Schema allows.
        return { kind: 'object', props, free: props.length === 0, depth: Math.max(0, FREE_DEPTH - depth - 1) };
      }
    }
  };

  return compile(schema, '', 0);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
