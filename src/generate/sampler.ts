import { QvlError } from '../errors.ts';
import { argmax } from '../kernels/ts/argmax.ts';
import { draw } from './draw.ts';
import { Rng } from './rng.ts';

export interface SamplingOptions {
  /** 0 (or doSample false) means greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** HF: divides positive / multiplies negative logits of ids seen in prompt + output (1 = off) */
  repetitionPenalty?: number;
  /** OpenAI/vLLM: subtracted once from ids already generated */
  presencePenalty?: number;
  /** OpenAI/vLLM: subtracted per occurrence in the generated ids */
  frequencyPenalty?: number;
  seed?: number;
  doSample?: boolean;
}

export function validateSampling(o: SamplingOptions): void {
  const bad = (name: string, v: unknown, rule: string) => {
    throw new QvlError('OPTION_INVALID', `${name} must be ${rule}, got ${String(v)}`, { option: name, value: v });
  };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad('temperature', o.temperature, 'a number ≥ 0');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('top_k', o.topK, 'an integer ≥ 0 (0 disables it)');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('top_p', o.topP, 'in (0, 1]');
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad('min_p', o.minP, 'in [0, 1]');
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetition_penalty', o.repetitionPenalty, '> 0');
  if (o.presencePenalty !== undefined && !(Math.abs(o.presencePenalty) <= 2)) bad('presence_penalty', o.presencePenalty, 'in [-2, 2]');
  if (o.frequencyPenalty !== undefined && !(Math.abs(o.frequencyPenalty) <= 2)) bad('frequency_penalty', o.frequencyPenalty, 'in [-2, 2]');
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) bad('seed', o.seed, 'an integer');
}

/**
 * Picks the next token from float32 logits, in HF's order: repetition penalty (and the
 * OpenAI-style presence/frequency penalties) → temperature → top-k → top-p → min-p → draw.
 */
export class Sampler {
  private readonly o: SamplingOptions;
  private readonly rng: Rng;
  /** prompt ids (for the repetition penalty) */
  private readonly seen = new Set<number>();
  /** generated ids and their counts (presence/frequency penalties) */
  private readonly generated = new Map<number, number>();

  /** greedy's pick: a backend's (a 152K-logit row: ~0.015 ms native, ~0.18 ms in TypeScript) */
  private readonly argmax: (x: Float32Array) => number;

  constructor(opts: SamplingOptions, promptIds: ArrayLike<number> = [], kernels?: { argmax(x: Float32Array): number }) {
    validateSampling(opts);
    this.o = opts;
    this.argmax = kernels ? (x) => kernels.argmax(x) : argmax;
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
    if ((opts.repetitionPenalty ?? 1) !== 1) for (let i = 0; i < promptIds.length; i++) this.seen.add(promptIds[i]);
  }

  get greedy(): boolean {
    return this.o.doSample === false || (this.o.temperature ?? 1) === 0;
  }

  /** Records an emitted token (call after each pick, also for forced tokens). */
  accept(id: number): void {
    this.generated.set(id, (this.generated.get(id) ?? 0) + 1);
    if ((this.o.repetitionPenalty ?? 1) !== 1) this.seen.add(id);
  }

  /** Applies the penalties in place (they change greedy picks too). */
  penalize(logits: Float32Array): void {
    const rp = this.o.repetitionPenalty ?? 1;
    if (rp !== 1) {
      for (const id of this.seen) logits[id] = logits[id] > 0 ? logits[id] / rp : logits[id] * rp;
    }
    const pp = this.o.presencePenalty ?? 0;
    const fp = this.o.frequencyPenalty ?? 0;
    if (pp !== 0 || fp !== 0) {
      for (const [id, count] of this.generated) logits[id] -= pp + fp * count;
    }
  }

  /** Penalizes `logits` in place and returns the chosen id. */
  pick(logits: Float32Array): number {
    this.penalize(logits);
    if (this.greedy) return this.argmax(logits);
    const o = { temperature: this.o.temperature ?? 1, topK: this.o.topK ?? 0, topP: this.o.topP ?? 1, minP: this.o.minP ?? 0 };
    return draw(logits, o, this.rng.next(), this.argmax);
  }
}
