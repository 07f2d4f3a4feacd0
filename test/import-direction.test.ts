/**
 * Keeps the imports between src/ folders pointing one way (docs/architecture.md, "Every arrow goes
 * one way"): a file may import only from its own unit or from a unit of lower rank. Every import
 * counts: static, `import type`, `export … from` and `import('…')`. Imports are found with
 * TypeScript's own scanner, so comments and strings are not mistaken for imports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/**
 * Rank of each unit (a folder under src/, a file at its root, or a single file placed apart from
 * its folder). Equal ranks may not import each other; a new folder must be given a rank here.
 */
const RANKS: Record<string, [rank: number, why: string]> = {
  'errors.ts': [0, 'QvlError: every layer throws it'],
  util: [0, 'small pure helpers (concat, byte formatting) that know no qvl concept'],
  kernels: [1, 'the Backend, weight types and float codecs; no files, checkpoints or model names'],
  media: [1, 'sources → RGB frames; frame choice and resizing come from its callers'],
  tokenizer: [1, 'tokenizer.json BPE, standalone'],
  template: [1, 'chat template rendering, standalone'],
  weights: [2, "checkpoints read and turned into the kernels' weight types"],
  processor: [2, "HF preprocessing of media's RGB frames, prompt expansion"],
  hub: [2, "model id → folder; downloads with media's HTTP client"],
  model: [3, 'the network: kernels over weights; knows no files, prompts or templates'],
  generate: [4, 'sampling and the generation loops over model/'],
  api: [5, 'the library (Qwen3VL, prompts, workers, quantize) composes everything below'],
  eval: [6, 'benchmarks run through api/'],
  parity: [6, 'stage-by-stage checks through api/ and model/'],
  server: [6, "HTTP over api/; its request parser and engine are reused by batch/"],
  batch: [7, "queue jobs that reuse the server's request parser, engine and completion"],
  'server/batch-routes.ts': [8, 'the HTTP face of batch/ (batch/ must not know routes)'],
  'server/serve.ts': [9, 'starts the server and mounts the batch routes'],
  cli: [10, 'commands over everything'],
  'index.ts': [10, 'the package entry re-exports the public surface'],
};

/**
 * Importing files exempt for now. Each entry is temporary and must still break the rule (a stale
 * entry fails the test, so it is removed once the code is fixed).
 */
const KNOWN_EXCEPTIONS: Record<string, string> = {};

/** The unit a path under src/ (posix, relative) belongs to. */
function unitOf(rel: string): string {
  if (rel in RANKS) return rel;
  const slash = rel.indexOf('/');
  return slash < 0 ? rel : rel.slice(0, slash);
}

interface Edge {
  from: string;
  line: number;
  spec: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

const posix = (p: string) => p.split(path.sep).join('/');

/** Relative imports of one file (path relative to src/), resolved to paths relative to src/. */
function importsOf(rel: string, text: string): Edge[] {
  const lineStarts = ts.createSourceFile(rel, text, ts.ScriptTarget.Latest, false).getLineStarts();
  const lineOf = (pos: number) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.filter((f) => f.fileName.startsWith('.'))
    .map((f) => ({ from: rel, line: lineOf(f.pos), spec: f.fileName, to: path.posix.normalize(path.posix.join(path.posix.dirname(rel), f.fileName)) }));
}

/** Why an edge breaks the ranks, or undefined when it is allowed. */
function violation(e: Edge): string | undefined {
  if (e.to.startsWith('../')) return 'imports from outside src/';
  const a = unitOf(e.from);
  const b = unitOf(e.to);
  if (a === b) return undefined;
  const ra = RANKS[a];
  const rb = RANKS[b];
  if (!ra) return `${a} has no rank in RANKS`;
  if (!rb) return `${b} has no rank in RANKS`;
  return rb[0] < ra[0] ? undefined : `${a} (rank ${ra[0]}) may not import ${b} (rank ${rb[0]}): ${b} is ${rb[1]}`;
}

function allEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((f) => {
    const rel = posix(path.relative(SRC, f));
    return importsOf(rel, fs.readFileSync(f, 'utf8'));
  });
}

test('imports between src/ folders go one way (docs/architecture.md)', () => {
  const edges = allEdges();
  assert.ok(edges.length > 200, `only ${edges.length} relative imports found: is the scanner broken?`);
  const bad: string[] = [];
  const excepted = new Set<string>();
  for (const e of edges) {
    const why = violation(e);
    if (!why) continue;
    if (e.from in KNOWN_EXCEPTIONS) excepted.add(e.from);
    else bad.push(`src/${e.from}:${e.line} → src/${e.to} (${why})`);
  }
  assert.deepEqual(bad, [], `imports against the layer order:\n  ${bad.join('\n  ')}`);
  const stale = Object.keys(KNOWN_EXCEPTIONS).filter((f) => !excepted.has(f));
  assert.deepEqual(stale, [], `KNOWN_EXCEPTIONS entries that no longer break the rule (remove them): ${stale.join(', ')}`);
});

test('every folder and root file under src/ has a rank', () => {
  const units = new Set(sourceFiles(SRC).map((f) => unitOf(posix(path.relative(SRC, f)))));
  const missing = [...units].filter((u) => !(u in RANKS));
  assert.deepEqual(missing, [], `give these a rank in RANKS: ${missing.join(', ')}`);
});

test('the scanner sees every import form, and not comments or strings', () => {
  const text = [
    "import type { A } from '../processor/a.ts';",
    "// import x from '../api/comment.ts'",
    "const s = \"import('../api/string.ts')\";",
    "export * from '../model/b.ts';",
    "const m = await import('../generate/dyn.ts');",
    "import { x } from './same.ts';",
  ].join('\n');
  const found = importsOf('media/x.ts', text).map((e) => `${e.line} ${e.to} ${violation(e) ? 'bad' : 'ok'}`);
  assert.deepEqual(found, ['1 processor/a.ts bad', '4 model/b.ts bad', '5 generate/dyn.ts bad', '6 media/same.ts ok']);
  assert.equal(violation({ from: 'api/x.ts', line: 1, spec: '', to: 'media/y.ts' }), undefined);
  assert.match(violation({ from: 'batch/x.ts', line: 1, spec: '', to: 'server/serve.ts' })!, /rank 7.*rank 9/);
});
