/**
 * A held-out set on disk: `items.jsonl` (one item per line) plus the pictures it references, and an
 * optional `dataset.json` with the settings its reference answers were made with.
 *
 * Item: { id, task, messages (HF-style; media paths relative to the dataset folder), expected,
 *         expected_boxes? (grounding, 0–1000), hf_answer?, hf_token_ids?, hf_top2_margin? }
 */
import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import type { Box } from './iou.ts';

export interface EvalItem {
  id: string;
  task: string;
  messages: unknown[];
  expected: string;
  expectedBoxes?: Box[];
  hfAnswer?: string;
  /** HF's generated ids, end-of-sequence token included when it stopped there */
  hfTokenIds?: number[];
  /** per generated token: top-1 minus top-2 raw logit in HF's run */
  hfTop2Margin?: number[];
}

export interface DatasetMeta {
  /** the token budget HF's answers were generated with */
  maxNewTokens?: number;
  [key: string]: unknown;
}

export interface Dataset {
  dir: string;
  items: EvalItem[];
  meta: DatasetMeta;
}

function bad(file: string, line: number, what: string, detail: Record<string, unknown> = {}): never {
  throw new QvlError('MESSAGE_INVALID', `${file}:${line}: ${what}`, { file, line, ...detail });
}

function isBox(v: unknown): v is Box {
  return Array.isArray(v) && v.length === 4 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

function numberList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

/** Parses and checks one line of items.jsonl. */
export function parseItem(text: string, file: string, line: number): EvalItem {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    bad(file, line, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad(file, line, 'an item must be a JSON object');
  const o = raw as Record<string, unknown>;
  for (const key of ['id', 'task', 'expected'] as const) {
    if (typeof o[key] !== 'string' || o[key] === '') bad(file, line, `"${key}" must be a non-empty string`, { [key]: o[key] });
  }
  if (!Array.isArray(o.messages) || o.messages.length === 0) bad(file, line, '"messages" must be a non-empty list', { id: o.id });
  const item: EvalItem = { id: o.id as string, task: o.task as string, messages: o.messages, expected: o.expected as string };
  if (o.expected_boxes !== undefined) {
    if (!Array.isArray(o.expected_boxes) || !o.expected_boxes.every(isBox)) {
      bad(file, line, '"expected_boxes" must be a list of [x1, y1, x2, y2] number lists', { id: o.id });
    }
    item.expectedBoxes = o.expected_boxes as Box[];
  }
  if (item.task === 'grounding' && !item.expectedBoxes?.length) bad(file, line, 'a grounding item needs "expected_boxes"', { id: o.id });
  if (o.hf_answer !== undefined) {
    if (typeof o.hf_answer !== 'string') bad(file, line, '"hf_answer" must be a string', { id: o.id });
    item.hfAnswer = o.hf_answer;
  }
  for (const [key, field] of [['hf_token_ids', 'hfTokenIds'], ['hf_top2_margin', 'hfTop2Margin']] as const) {
    if (o[key] === undefined) continue;
    if (!numberList(o[key])) bad(file, line, `"${key}" must be a list of numbers`, { id: o.id });
    item[field] = o[key] as number[];
  }
  return item;
}

const EXTERNAL = /^(?:[a-z][a-z0-9+.-]*:)/i;

/** A media reference relative to the dataset folder becomes an absolute path; URLs and data URIs stay. */
function resolveRef(dir: string, ref: unknown): unknown {
  if (typeof ref !== 'string' || EXTERNAL.test(ref) || path.isAbsolute(ref)) return ref;
  return path.resolve(dir, ref);
}

/** The item's messages with every image/video path made absolute (qvl would resolve them against the cwd). */
export function resolveMedia(dir: string, messages: unknown[]): unknown[] {
  return messages.map((m) => {
    if (typeof m !== 'object' || m === null || !Array.isArray((m as { content?: unknown }).content)) return m;
    const content = ((m as { content: unknown[] }).content).map((part) => {
      if (typeof part !== 'object' || part === null) return part;
      const p = { ...(part as Record<string, unknown>) };
      if (p.image !== undefined) p.image = resolveRef(dir, p.image);
      if (p.video !== undefined) p.video = Array.isArray(p.video) ? p.video.map((f) => resolveRef(dir, f)) : resolveRef(dir, p.video);
      return p;
    });
    return { ...(m as object), content };
  });
}

export function loadDataset(dir: string): Dataset {
  const file = path.join(dir, 'items.jsonl');
  if (!fs.existsSync(file)) throw new QvlError('FILE_NOT_FOUND', `no items.jsonl in the dataset folder ${dir}`, { dir, file });
  const items: EvalItem[] = [];
  const seen = new Set<string>();
  fs.readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (text.trim() === '') return;
      const item = parseItem(text, file, i + 1);
      if (seen.has(item.id)) bad(file, i + 1, `duplicate item id "${item.id}"`, { id: item.id });
      seen.add(item.id);
      items.push(item);
    });
  if (items.length === 0) throw new QvlError('MESSAGE_INVALID', `${file} holds no items`, { file });
  let meta: DatasetMeta = {};
  const metaFile = path.join(dir, 'dataset.json');
  if (fs.existsSync(metaFile)) {
    try {
      meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as DatasetMeta;
    } catch (e) {
      throw new QvlError('MESSAGE_INVALID', `${metaFile}: not valid JSON (${(e as Error).message})`, { file: metaFile });
    }
    const n = meta.maxNewTokens ?? (meta as Record<string, unknown>).max_new_tokens;
    if (n !== undefined && !(Number.isInteger(n) && (n as number) > 0)) {
      throw new QvlError('MESSAGE_INVALID', `${metaFile}: max_new_tokens must be a positive integer, got ${JSON.stringify(n)}`, { file: metaFile });
    }
    meta.maxNewTokens = n as number | undefined;
  }
  return { dir, items, meta };
}
