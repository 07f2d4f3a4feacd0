import { QvlError } from '../errors.ts';
import { DecodeBatcher } from '../generate/batch.ts';
import type { FinishReason } from '../generate/generate.ts';
import { parseOutput, type ParsedOutput } from '../generate/parse/output.ts';
import { promptOpensThink } from '../generate/parse/think.ts';
import { loadGenerationDefaults, type GenerationDefaults } from '../generate/generation-config.ts';
import type { SamplingOptions } from '../generate/sampler.ts';
import { StopStringFilter } from '../generate/stop-strings.ts';
import type { Backend } from '../kernels/backend.ts';
import { selectBackend, type BackendName, type InstructionSet } from '../kernels/select.ts';
import type { WeightData } from '../kernels/weight.ts';
import { loadConfig, type RopeScalingOverride } from '../model/config.ts';
import type { Qwen3VLModel } from '../model/qwen3vl.ts';
import { loadProcessorConfig, type ProcessorConfig } from '../processor/index.ts';
import { loadChatTemplate, type ChatTemplate } from '../template/chat-template.ts';
import { StreamingDetokenizer } from '../tokenizer/stream-decoder.ts';
import { loadTokenizer, type QwenTokenizer } from '../tokenizer/tokenizer.ts';
import { loadTimeConvert, type QuantMode } from '../weights/quant-plan.ts';
import { loadModelFromDir } from './load-model.ts';
import { planMemory, type MemoryPlan } from './memory-plan.ts';
import { DEFAULT_KV_TYPE, parseKvType, type KvType } from '../kernels/kv.ts';
import { resolveModel, type ResolveModelOptions } from '../hub/index.ts';
import { locateModel } from './model-location.ts';
import { preparePrompt, type PreparedPrompt, type PromptOptions } from './prompt.ts';
import type { PlanOptions } from './request-plan.ts';
import type { EngineStats } from './worker-protocol.ts';

export interface FromPretrainedOptions {
  /** download settings for hub ids (revision, cache folder, token, progress, offline) */
  hub?: ResolveModelOptions;
  /** 'auto' (default): native kernels when the addon loads, else TypeScript */
  backend?: BackendName | Backend;
  /** threads for the native backend (default: physical cores) */
  threads?: number;
  /**
   * native only: force a kernel set (a name of INSTRUCTION_SETS, src/kernels/native/instruction-sets.ts;
   * default 'best', the widest this CPU runs), e.g. to measure what an AVX2 CPU gets. It holds
   * for every model on the calling thread; a set this CPU lacks is an error.
   */
  isa?: InstructionSet;
  /** re-encode weights at load time */
  convert?: (w: WeightData, name: string) => WeightData;
  // quantization at load (weights/quant-plan.ts, docs/quantization.md)
  /** quantize the float weights while loading: q8 everywhere, or q4 text decoder + q8 rest */
  quant?: QuantMode;
  onProgress?: (done: number, total: number) => void;
  // long context (docs/long-context.md)
  /** how keys and values are stored: 'f16' (default), 'bf16', 'q8' (about half of f16) or 'f32' */
  kvType?: KvType;
  /**
   * prompt + answer tokens of one sequence. Default: the model's own limit when it fits in the
   * memory available, else the longest that does; a context that cannot fit is refused.
   */
  context?: number;
  /** YaRN beyond the trained context, e.g. { type: 'yarn', factor: 4 } for 1M positions on a 256K model */
  ropeScaling?: RopeScalingOverride;
  /** called with the memory plan before the weights are read */
  onPlan?: (plan: MemoryPlan) => void;
  /**
   * Keep the KV blocks of finished prompts and answers, up to this many bytes, for later prompts
   * that start the same way (the next turn of a conversation, a shared system prompt, the same
   * picture): only what follows the shared part is computed. Default 0 (off).
   */
  prefixCacheBytes?: number;
  /** Keep the vision tower's output per picture or video, up to this many bytes (default 0: off). */
  visionCacheBytes?: number;
  /**
   * Most answers generated at once (default 4): concurrent `chat`/`stream` calls decode together,
   * one pass over the weights per step for all of them; more wait for a slot.
   */
  parallel?: number;
}

export interface ChatOptions extends PromptOptions, SamplingOptions {
  /** default 1024 (or the model's generation_config max_new_tokens) */
  maxNewTokens?: number;
  /** stop when any of these strings appears (it is not part of the answer) */
  stop?: string | string[];
  /** drop special tokens from the text (default true) */
  skipSpecialTokens?: boolean;
  signal?: AbortSignal;
  /** masks logits before sampling (constrained decoding); the array is reused by the next step */
  logitsProcessor?: (logits: Float32Array, generated: readonly number[]) => void;
  /** tokens per prefill chunk (bounds memory on long prompts; default 512) */
  prefillChunk?: number;
}

export interface ChatUsage {
  promptTokens: number;
  /** prompt tokens whose KV was reused from earlier requests (prefix cache; 0 or absent: none) */
  cachedTokens?: number;
  completionTokens: number;
  totalTokens: number;
}

export interface ChatResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  usage: ChatUsage;
  timings: { prefillMs: number; decodeMs: number };
  media: PreparedPrompt['media'];
  /** `text` parsed: answer, reasoning (Thinking models), tool calls (when tools were given), grounding boxes/points in pixels */
  output: ParsedOutput;
}

/** What runs a loaded model: `model.info()`. */
export interface ModelInfo {
  dir: string;
  /** 'native' (C++ kernels) or 'ts' (the TypeScript reference kernels, much slower) */
  backend: string;
  /** native only: the instruction set its kernels use ('avx512vnni', 'avx512', 'avx2' or 'scalar') */
  isa?: string;
  /** native only: threads in its pool */
  threads?: number;
  /** how the text decoder's weights are stored ('bf16', 'q8', 'q4', …): shows what `quant` did */
  weights: string;
  /** how the KV cache is stored */
  kvType: KvType;
  /** prompt + answer tokens one request may use */
  context: number;
}

/** A streamed answer: iterate for text deltas; `result` resolves when generation ends. */
export interface ChatStream extends AsyncIterable<string> {
  result: Promise<ChatResult>;
}

/** Qwen3-VL, loaded from a Hugging Face checkpoint folder. */
export class Qwen3VL {
  readonly dir: string;
  readonly model: Qwen3VLModel;
  readonly tokenizer: QwenTokenizer;
  readonly template: ChatTemplate;
  readonly processor: ProcessorConfig;
  readonly generation: GenerationDefaults;

  /** runs every generation of this model: concurrent ones share decode steps */
  readonly batcher: DecodeBatcher;

  private constructor(
    dir: string,
    model: Qwen3VLModel,
    tokenizer: QwenTokenizer,
    template: ChatTemplate,
    processor: ProcessorConfig,
    generation: GenerationDefaults,
    parallel?: number,
  ) {
    this.batcher = new DecodeBatcher(model, { maxParallel: parallel });
    this.dir = dir;
    this.model = model;
    this.tokenizer = tokenizer;
    this.template = template;
    this.processor = processor;
    this.generation = generation;
  }

  /**
   * Loads a model folder, or a hub id ("Qwen/Qwen3-VL-4B-Instruct", "modelscope:org/name"),
   * which is downloaded into the Hugging Face cache when missing (a local folder always wins).
   */
  static async fromPretrained(idOrDir: string, opts: FromPretrainedOptions = {}): Promise<Qwen3VL> {
    const where = locateModel(idOrDir);
    const dir = where.kind === 'local' ? where.dir : (await resolveModel(where.id, opts.hub ?? {})).path;
    const cfg = loadConfig(dir, { ropeScaling: opts.ropeScaling });
    const kvType = opts.kvType === undefined ? DEFAULT_KV_TYPE : parseKvType(opts.kvType, 'kvType');
    const plan = planMemory(dir, cfg, { kvType, context: opts.context, quant: opts.quant });
    opts.onPlan?.(plan);
    const convert = loadTimeConvert(opts.quant, opts.convert);
    if (typeof opts.backend === 'object' && opts.isa !== undefined) {
      throw new QvlError('OPTION_INVALID', 'isa applies to a backend qvl creates; call useInstructionSet on the one passed as backend', { isa: opts.isa });
    }
    const choice = typeof opts.backend === 'object' ? { backend: opts.backend, map: undefined, release: undefined } : await selectBackend(opts.backend ?? 'auto', { threads: opts.threads, isa: opts.isa });
    const [tokenizer, template] = await Promise.all([loadTokenizer(dir), loadChatTemplate(dir)]);
    const model = loadModelFromDir(dir, { backend: choice.backend, map: choice.map, release: choice.release, config: cfg, convert, onProgress: opts.onProgress, kv: { type: kvType, context: plan.context }, reuse: { prefixCacheBytes: opts.prefixCacheBytes, visionCacheBytes: opts.visionCacheBytes } });
    return new Qwen3VL(dir, model, tokenizer, template, loadProcessorConfig(dir), loadGenerationDefaults(dir), opts.parallel);
  }

  get backendName(): string {
    return this.model.backend.name;
  }

  /** Counters of the batch, the KV pool and the caches (what a server's /metrics shows). */
  stats(): EngineStats {
    const b = this.batcher;
    const pool = this.model.kvPool().stats;
    return {
      running: b.active,
      waiting: b.queued,
      kvBlocksUsed: pool.used,
      kvBlocksAllocated: pool.used + pool.free,
      kvBytes: pool.bytes,
      decodeSteps: b.decodeSteps,
      decodeRows: b.decodeRows,
      cachedPromptTokens: this.model.prefixCache?.cachedTokens ?? 0,
      computedPromptTokens: b.prefilledTokens,
      joinedPrompts: b.joinedPrompts,
      visionLookups: this.model.visionCache?.lookups ?? 0,
      visionHits: this.model.visionCache?.hits ?? 0,
      visionCacheBytes: this.model.visionCache?.bytes ?? 0,
    };
  }

  /** The backend that runs this model and, for the native one, its instruction set and threads. */
  info(): ModelInfo {
    const b = this.model.backend as { name: string; isa?: string; threads?: number };
    const info: ModelInfo = {
      dir: this.dir,
      backend: b.name,
      weights: this.model.weights.text.layers[0]?.gate.format ?? 'none',
      kvType: this.model.kvOptions.type,
      context: this.model.contextLength,
    };
    if (b.isa !== undefined) info.isa = b.isa;
    if (b.threads !== undefined) info.threads = b.threads;
    return info;
  }

  /** Renders, loads and preprocesses a request without running the model (token cost, ids). */
  prepare(messages: unknown, opts: PlanOptions = {}): Promise<PreparedPrompt> {
    return preparePrompt(
      { tokenizer: this.tokenizer, template: this.template, processor: this.processor, mergeSize: this.model.cfg.vision.spatialMergeSize },
      messages,
      opts,
    );
  }

  async chat(messages: unknown, opts: ChatOptions = {}): Promise<ChatResult> {
    const s = this.stream(messages, opts);
    for await (const _ of s) {
      // text is collected by the stream itself
    }
    return s.result;
  }

  stream(messages: unknown, opts: ChatOptions = {}): ChatStream {
    let resolve!: (r: ChatResult) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<ChatResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Consumers that only await `result` must not see an unhandled rejection twice.
    result.catch(() => {});
    const self = this;
    async function* run(): AsyncGenerator<string> {
      try {
        const prepared = await self.prepare(messages, opts);
        const r = yield* self.generateText(prepared, opts);
        resolve(r);
      } catch (e) {
        reject(e);
        throw e;
      }
    }
    const it = run();
    return { [Symbol.asyncIterator]: () => it, result };
  }

  /** Generates from an already prepared prompt, yielding text deltas. */
  async *generateText(prepared: PreparedPrompt, opts: ChatOptions = {}): AsyncGenerator<string, ChatResult> {
    const g = this.generation;
    const sampling: SamplingOptions = {
      doSample: opts.doSample ?? (opts.temperature === undefined ? g.doSample : undefined),
      temperature: opts.temperature ?? g.temperature,
      topK: opts.topK ?? g.topK,
      topP: opts.topP ?? g.topP,
      minP: opts.minP ?? g.minP,
      repetitionPenalty: opts.repetitionPenalty ?? g.repetitionPenalty,
      presencePenalty: opts.presencePenalty,
      frequencyPenalty: opts.frequencyPenalty,
      seed: opts.seed,
    };
    const stops = opts.stop === undefined ? [] : Array.isArray(opts.stop) ? opts.stop : [opts.stop];
    const gen = this.batcher.submit(prepared, {
      ...sampling,
      maxNewTokens: opts.maxNewTokens ?? g.maxNewTokens ?? 1024,
      eosTokenIds: g.eosTokenIds,
      logitsProcessor: opts.logitsProcessor,
      signal: opts.signal,
      prefill: opts.prefillChunk ? { chunkSize: opts.prefillChunk } : undefined,
    });
    const detok = new StreamingDetokenizer(this.tokenizer, { skipSpecialTokens: opts.skipSpecialTokens ?? true });
    const filter = new StopStringFilter(stops);
    const tokenIds: number[] = [];
    let text = '';
    try {
      for await (const id of gen) {
        tokenIds.push(id);
        const delta = filter.push(detok.push(id));
        if (delta) {
          text += delta;
          yield delta;
        }
        if (filter.stopped) break;
      }
    } finally {
      // a stop string, or a consumer that stopped reading: the sequence leaves the batch at the next step
      gen.stop();
    }
    const done = await gen.result;
    const finishReason: FinishReason = filter.stopped ? 'stop' : done.finishReason;
    const timings = { prefillMs: done.prefillMs, decodeMs: done.decodeMs };
    const tail = filter.push(detok.flush()) + filter.flush();
    if (tail) {
      text += tail;
      yield tail;
    }
    const promptTokens = prepared.ids.length;
    return {
      text,
      tokenIds,
      finishReason,
      usage: { promptTokens, cachedTokens: done.cachedTokens ?? 0, completionTokens: tokenIds.length, totalTokens: promptTokens + tokenIds.length },
      timings,
      media: prepared.media,
      // output parsing (generate/parse): reads the rendered prompt to know whether it opened <think>
      output: parseOutput(text, { startsInThink: promptOpensThink(prepared.text), toolCalls: (opts.tools?.length ?? 0) > 0, media: prepared.media }),
    };
  }
}
