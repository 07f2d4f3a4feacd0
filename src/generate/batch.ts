/**
 * Continuous batching: sequences that are decoding advance together, one token each per step, in
 * one pass over the weights (`Qwen3VLModel.forwardRows`: on a CPU a step costs about what one
 * sequence's step costs, since reading the weights dominates). A new sequence whose prompt has at
 * most `joinRows` tokens left to compute (after a reused prefix) and no media to encode joins the
 * next step itself: its prompt rows ride in the same pass as the running sequences' tokens. A
 * longer prompt, or one with pictures to encode, runs in chunks interleaved with the steps, so
 * running streams keep flowing while it is prefilled. Each sequence keeps its own sampler
 * (penalties, seed), logits processor, limits and cancellation; one that ends returns its KV
 * blocks at once.
 */
import { QvlError } from '../errors.ts';
import type { KVCache } from '../model/kv-cache.ts';
import type { BatchRows, ModelInputs, PrefillRun, Qwen3VLModel } from '../model/qwen3vl.ts';
import type { FinishReason, GenerateOptions, GenerateResult } from './generate.ts';
import { resolveLimits } from './limits.ts';
import { Sampler } from './sampler.ts';

export interface BatchOptions {
  /** most sequences decoding at once (default 4) */
  maxParallel?: number;
  /**
   * Prefill time between two decode steps of running sequences (default 300 ms; a step of prefill,
   * a decoder layer of a chunk or a vision block, may overrun it): bounds the pause running streams see.
   */
  prefillSliceMs?: number;
  /**
   * Prompt rows that may join a decode step (default 32): a prompt with at most this many tokens
   * left to compute joins the next step instead of a prefill of its own, and a step in which other
   * sequences decode takes joining prompts up to this many rows in all (always at least one; a
   * step with none decoding takes every joining prompt). 0: every prompt prefills alone.
   */
  joinRows?: number;
}

/** What a submitted sequence hands its consumer: generated ids as they come, then the result. */
export interface BatchedGeneration extends AsyncIterable<number> {
  result: Promise<GenerateResult>;
  /** ends the sequence at the next step with finish reason 'stop' (a stop string was seen) */
  stop(): void;
}

interface Sequence {
  inputs: ModelInputs;
  opts: GenerateOptions;
  cache?: KVCache;
  prefill?: PrefillRun;
  /** the prompt's rows still to compute, waiting to join a decode step (instead of `prefill`) */
  promptRows?: BatchRows;
  sampler?: Sampler;
  eos: Set<number>;
  budget: number;
  delta: number;
  /** logits waiting to be sampled (after prefill or the last step) */
  logits?: Float32Array;
  tokens: number[];
  /** prompt tokens whose KV came from the prefix cache */
  cachedTokens: number;
  /** whether the sequence takes part in the prefix cache */
  reuse: boolean;
  stopped: boolean;
  t0: number;
  prefillMs: number;
  decodeStart: number;
  // consumer side
  queue: number[];
  wake?: () => void;
  finished: boolean;
  error?: unknown;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
}

export class DecodeBatcher {
  readonly maxParallel: number;
  prefillSliceMs: number;
  joinRows: number;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private looping = false;
  /** decode steps run, and the sequences they advanced */
  decodeSteps = 0;
  decodeRows = 0;
  /** prompt tokens prefilled */
  prefilledTokens = 0;
  /** prompts whose rows went through a batched step (instead of a prefill of their own) */
  joinedPrompts = 0;
  /** the last pass's logits, whose rows its sequences sample; the next pass writes over them */
  private stepLogits?: Float32Array;

  constructor(
    readonly model: Qwen3VLModel,
    opts: BatchOptions = {},
  ) {
    const n = opts.maxParallel ?? 4;
    if (!Number.isInteger(n) || n < 1) throw new QvlError('OPTION_INVALID', `parallel must be a positive integer, got ${n}`, { value: n });
    this.maxParallel = n;
    this.prefillSliceMs = opts.prefillSliceMs ?? 300;
    const j = opts.joinRows ?? 32;
    if (!Number.isInteger(j) || j < 0) throw new QvlError('OPTION_INVALID', `joinRows must be an integer ≥ 0, got ${j}`, { value: j });
    this.joinRows = j;
  }

  /** sequences decoding or being prefilled */
  get active(): number {
    return this.running.length;
  }

  /** sequences waiting for a slot */
  get queued(): number {
    return this.waiting.length;
  }

  /** Adds a sequence; it starts when a slot is free (at once when fewer than maxParallel run). */
  submit(inputs: ModelInputs, opts: GenerateOptions): BatchedGeneration {
    resolveLimits(0, { maxNewTokens: opts.maxNewTokens }, Infinity);
    let resolve!: (r: GenerateResult) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<GenerateResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    result.catch(() => {});
    const s: Sequence = {
      inputs,
      opts,
      eos: new Set(opts.eosTokenIds),
      budget: 0,
      delta: 0,
      tokens: [],
      cachedTokens: 0,
      reuse: false,
      stopped: false,
      t0: 0,
      prefillMs: 0,
      decodeStart: 0,
      queue: [],
      finished: false,
      resolve,
      reject,
    };
    this.waiting.push(s);
    this.kick();
    const iterate = async function* (): AsyncGenerator<number> {
      for (;;) {
        while (s.queue.length) yield s.queue.shift()!;
        if (s.finished) {
          if (s.error) throw s.error;
          return;
        }
        await new Promise<void>((r) => (s.wake = r));
        s.wake = undefined;
      }
    };
    return {
      [Symbol.asyncIterator]: iterate,
      result,
      stop: () => {
        s.stopped = true;
      },
    };
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    setImmediate(() => this.loop());
  }

  /**
   * One round: admit, prefill, one decode step for everyone ready; then yield to I/O. While other
   * sequences are decoding, prefill gets a slice of time (whole steps: a decoder layer of a chunk,
   * half a vision block, a DeepStack merger) before their next step, so their tokens keep
   * coming; alone, it runs through.
   */
  private loop(): void {
    try {
      // the slice counts admission too (hashing an image's pixels for the caches), and ends
      // before a step that would likely overrun it (one as long as the last)
      const t0 = performance.now();
      this.admit();
      while (this.running.some((x) => x.prefill)) {
        const t1 = performance.now();
        this.prefillOne();
        const t2 = performance.now();
        // sequences waiting for the next step: ones with logits to sample, prompts that join it
        if (this.running.some((x) => x.logits || x.promptRows) && t2 - t0 + (t2 - t1) >= this.prefillSliceMs) break;
      }
      this.step();
    } catch (e) {
      // a failure of the batch as a whole (not of one sequence) ends every sequence in it
      for (const s of [...this.running]) this.finish(s, e);
    }
    if (this.running.length || this.waiting.length) setImmediate(() => this.loop());
    else this.looping = false;
  }

  private admit(): void {
    while (this.running.length < this.maxParallel && this.waiting.length) {
      const s = this.waiting.shift()!;
      try {
        this.start(s);
        this.running.push(s);
      } catch (e) {
        this.finish(s, e);
      }
    }
  }

  private start(s: Sequence): void {
    const { model } = this;
    const L = s.inputs.ids.length;
    s.budget = resolveLimits(L, s.opts, model.contextLength).maxNewTokens;
    checkAbort(s.opts.signal);
    s.sampler = new Sampler(s.opts, s.inputs.ids, this.model.backend);
    s.t0 = performance.now();
    s.cache = model.newCache();
    const prefix = model.prefixCache;
    if (prefix && !s.opts.prefill?.allLogits && !s.opts.prefill?.trace) {
      s.reuse = true;
      // at least one prompt token is computed: its logits start the answer
      s.cachedTokens = prefix.attach(model.prefixIdentities(s.inputs), s.cache, L - 1);
    }
    const p = s.opts.prefill;
    const left = L - s.cache.length;
    const joins = left <= this.joinRows && left <= (p?.chunkSize ?? Infinity) && !p?.allLogits && !p?.trace && !p?.vision;
    // undefined when media pads are left (their pictures are encoded by prefillRun)
    const rest = joins ? model.promptRows(s.inputs, s.cache) : undefined;
    if (rest) {
      s.promptRows = rest.rows;
      s.delta = rest.positions.delta;
    } else {
      s.prefill = model.prefillRun(s.inputs, s.cache, p);
    }
  }

  /** Advances the oldest sequence still prefilling by one chunk (the vision tower counts as one). */
  private prefillOne(): void {
    const s = this.running.find((x) => x.prefill);
    if (!s) return;
    try {
      checkAbort(s.opts.signal);
      const r = s.prefill!.next();
      if (!r.done) return;
      s.prefill = undefined;
      this.prefilledTokens += s.inputs.ids.length - s.cachedTokens;
      s.delta = r.value.positions.delta;
      s.logits = r.value.logits;
      s.prefillMs = performance.now() - s.t0;
      s.decodeStart = performance.now();
    } catch (e) {
      this.finish(s, e);
    }
  }

  /** Samples every sequence with logits waiting, then decodes those that go on in one batch. */
  private step(): void {
    const next: Sequence[] = [];
    const ids: number[] = [];
    for (const s of [...this.running]) {
      if (!s.logits) continue;
      try {
        checkAbort(s.opts.signal);
        const logits = s.logits;
        s.logits = undefined;
        if (s.stopped) {
          this.finish(s, undefined, 'stop');
          continue;
        }
        if (s.tokens.length >= s.budget) {
          this.finish(s, undefined, 'length');
          continue;
        }
        s.opts.logitsProcessor?.(logits, s.tokens);
        const id = s.sampler!.pick(logits);
        if (s.eos.has(id)) {
          this.finish(s, undefined, 'stop');
          continue;
        }
        s.sampler!.accept(id);
        s.tokens.push(id);
        s.queue.push(id);
        s.wake?.();
        if (s.tokens.length >= s.budget) {
          this.finish(s, undefined, 'length');
          continue;
        }
        // room for the next position now: a KV pool out of blocks ends this sequence, not the pass
        s.cache!.reserve(s.cache!.length + 1);
        next.push(s);
        ids.push(id);
      } catch (e) {
        this.finish(s, e);
      }
    }
    const parts = next.map((s, i) => this.model.tokenRows(ids[i], s.cache!, s.delta));
    const joining = this.joining(next.length > 0);
    for (const s of joining) parts.push(s.promptRows!);
    if (!parts.length) return;
    if (next.length) {
      this.decodeSteps++;
      this.decodeRows += next.length;
    }
    const logits = this.model.forwardRows(parts, this.logitsOut(parts.length));
    const V = logits.length / parts.length;
    const rows = (i: number) => (parts.length === 1 ? logits : logits.subarray(i * V, (i + 1) * V));
    next.forEach((s, i) => (s.logits = rows(i)));
    const now = performance.now();
    this.joinedPrompts += joining.length;
    joining.forEach((s, i) => {
      this.prefilledTokens += s.promptRows!.ids.length;
      s.promptRows = undefined;
      s.logits = rows(next.length + i);
      s.prefillMs = now - s.t0;
      s.decodeStart = now;
    });
  }

  /**
   * Where a pass of `rows` parts writes its logits: the same array every step (8 rows of a fresh
   * one, 4.9 MB at the 4B shape, were faulted in page by page: ~8 ms of a 120 ms step on 2 cores
   * in a VM). A row not yet sampled (step samples them all before the pass) keeps a copy.
   */
  private logitsOut(rows: number): Float32Array {
    const V = this.model.cfg.text.vocabSize;
    const buf = this.stepLogits;
    if (buf) for (const s of this.running) if (s.logits?.buffer === buf.buffer) s.logits = s.logits.slice();
    if (!buf || buf.length < rows * V) this.stepLogits = new Float32Array(rows * V);
    return this.stepLogits!.subarray(0, rows * V);
  }

  /**
   * Prompts that join this step, oldest first: within joinRows rows in all (at least one) while
   * other sequences decode in it, all of them when none does (no stream waits on the pass). An
   * aborted one, or one the KV pool has no room for, ends here.
   */
  private joining(decoding: boolean): Sequence[] {
    const out: Sequence[] = [];
    let rows = 0;
    for (const s of [...this.running]) {
      if (!s.promptRows) continue;
      const n = s.promptRows.ids.length;
      if (decoding && out.length && rows + n > this.joinRows) continue;
      try {
        checkAbort(s.opts.signal);
        s.cache!.reserve(s.cache!.length + n);
      } catch (e) {
        this.finish(s, e);
        continue;
      }
      out.push(s);
      rows += n;
    }
    return out;
  }

  private finish(s: Sequence, error: unknown, reason: FinishReason = 'length'): void {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    // a sequence whose prefill completed leaves its whole blocks (prompt and answer) to the prefix cache
    if (s.cache && s.reuse && !s.prefill && s.decodeStart && error === undefined) {
      try {
        const ids = Int32Array.from([...Array.from(s.inputs.ids), ...s.tokens]);
        this.model.prefixCache?.store(this.model.prefixIdentities(s.inputs, ids, s.cache.length), s.cache);
      } catch {
        // keeping a prefix is an optimization: never a reason to fail the answer
      }
    }
    s.cache?.release();
    s.cache = undefined;
    s.prefill?.return(undefined as never);
    s.prefill = undefined;
    s.promptRows = undefined;
    s.finished = true;
    if (error !== undefined) {
      s.error = error;
      s.reject(error);
    } else {
      const decodeMs = s.decodeStart ? performance.now() - s.decodeStart : 0;
      s.resolve({ tokens: s.tokens, finishReason: reason, promptTokens: s.inputs.ids.length, cachedTokens: s.cachedTokens, prefillMs: s.prefillMs, decodeMs });
    }
    s.wake?.();
  }
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new QvlError('ABORTED', 'generation was cancelled', {});
}
