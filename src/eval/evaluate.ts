/**
 * Runs a held-out set through qvl (greedy decoding) and scores it against the expected answers and
 * against HF transformers' recorded answers. See score.ts for the rules, report.ts for the table.
 */
import path from 'node:path';
import { Qwen3VL, type ChatOptions, type ChatResult } from '../api/qwen3vl.ts';
import type { PreparedPrompt } from '../api/prompt.ts';
import { QvlError } from '../errors.ts';
import type { BackendName } from '../kernels/select.ts';
import type { QuantMode } from '../weights/quant-plan.ts';
import { loadDataset, resolveMedia, type EvalItem } from './dataset.ts';
import { scoreItem, summarize, type EvalReport, type ItemResult } from './score.ts';
import { teacherForcing, type ForcedAgreement } from './teacher-forced.ts';

export const DEFAULT_MAX_NEW_TOKENS = 48;

export interface EvaluateOptions {
  /** at most this many items (after the other filters), in file order */
  limit?: number;
  /** at most this many items of each task, in file order */
  perTask?: number;
  /** only these tasks */
  tasks?: string[];
  /** only these item ids */
  ids?: string[];
  /** 'ts', 'native' or 'auto' (default) */
  backend?: string;
  /** quantize the weights at load (q8 or q4), to see what quantization changes in the answers */
  quant?: QuantMode;
  /** default: the set's dataset.json max_new_tokens, else 48 */
  maxNewTokens?: number;
  /**
   * also run each item that has HF's token ids along HF's answer (teacher forcing) and count the
   * positions where the model's top token is HF's (teacher-forced.ts); doubles the run's time
   */
  teacherForced?: boolean;
  /** reuse a loaded model (its folder must be modelDir) */
  model?: Qwen3VL;
  onItem?: (r: ItemResult, done: number, total: number) => void;
}

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
    throw new QvlError('OPTION_INVALID', `${name} must be a positive integer, got ${v}`, { [name]: v });
  }
}

/** The items an evaluation covers, in file order. */
export function selectItems(items: readonly EvalItem[], opts: Pick<EvaluateOptions, 'limit' | 'perTask' | 'tasks' | 'ids'>): EvalItem[] {
  positiveInt('limit', opts.limit);
  positiveInt('perTask', opts.perTask);
  const known = new Set(items.map((i) => i.task));
  for (const t of opts.tasks ?? []) {
    if (!known.has(t)) throw new QvlError('OPTION_INVALID', `the dataset has no task "${t}" (it has ${[...known].join(', ')})`, { task: t });
  }
  const ids = opts.ids ? new Set(opts.ids) : undefined;
  const tasks = opts.tasks ? new Set(opts.tasks) : undefined;
  const perTask = new Map<string, number>();
  const out: EvalItem[] = [];
  for (const item of items) {
    if (ids && !ids.has(item.id)) continue;
    if (tasks && !tasks.has(item.task)) continue;
    const k = perTask.get(item.task) ?? 0;
    if (opts.perTask !== undefined && k >= opts.perTask) continue;
    perTask.set(item.task, k + 1);
    out.push(item);
    if (opts.limit !== undefined && out.length >= opts.limit) break;
  }
  if (ids) {
    const missing = [...ids].filter((id) => !items.some((i) => i.id === id));
    if (missing.length) throw new QvlError('OPTION_INVALID', `the dataset has no item ${missing.map((m) => `"${m}"`).join(', ')}`, { ids: missing });
  }
  return out;
}

export async function evaluate(modelDir: string, datasetDir: string, opts: EvaluateOptions = {}): Promise<EvalReport> {
  const t0 = performance.now();
  const dataset = loadDataset(datasetDir);
  const items = selectItems(dataset.items, opts);
  if (opts.teacherForced && !items.some((i) => i.hfTokenIds?.length)) {
    throw new QvlError('OPTION_INVALID', `teacher forcing follows HF's answer tokens, and none of the ${items.length} selected items has hf_token_ids`, { teacherForced: true });
  }
  const maxNewTokens = opts.maxNewTokens ?? dataset.meta.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  positiveInt('maxNewTokens', maxNewTokens);
  if (opts.model && path.resolve(opts.model.dir) !== path.resolve(modelDir)) {
    throw new QvlError('OPTION_INVALID', `the model passed in was loaded from ${opts.model.dir}, not ${modelDir}`, { modelDir });
  }
  const model = opts.model ?? (await Qwen3VL.fromPretrained(modelDir, { backend: (opts.backend ?? 'auto') as BackendName, quant: opts.quant }));
  const results: ItemResult[] = [];
  for (const item of items) {
    const start = performance.now();
    // prepared once: the teacher-forced run reuses the decoded media and the prompt's ids
    const prepared = await model.prepare(resolveMedia(dataset.dir, item.messages));
    const r = await generate(model, prepared, { maxNewTokens, temperature: 0 });
    const res = scoreItem(item, r.text, r.tokenIds, performance.now() - start);
    if (opts.teacherForced && item.hfTokenIds?.length) {
      const forced: ForcedAgreement = { positions: 0, agree: 0, misses: [] };
      await generate(model, prepared, {
        maxNewTokens: item.hfTokenIds.length,
        temperature: 0,
        repetitionPenalty: 1,
        logitsProcessor: teacherForcing(item.hfTokenIds, forced),
      });
      res.forced = forced;
    }
    results.push(res);
    opts.onItem?.(res, results.length, items.length);
  }
  const { tasks, overall } = summarize(results, items);
  return { modelDir, datasetDir, backend: model.backendName, quant: opts.quant, maxNewTokens, items: results, tasks, overall, ms: performance.now() - t0 };
}

/** A whole answer from an already prepared prompt (`Qwen3VL.chat` without the preparing). */
async function generate(model: Qwen3VL, prepared: PreparedPrompt, opts: ChatOptions): Promise<ChatResult> {
  const g = model.generateText(prepared, opts);
  for (;;) {
    const step = await g.next();
    if (step.done) return step.value;
  }
}
