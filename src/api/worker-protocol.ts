/**
 * Messages between the inference worker and its host (structured-clone data only). Every request
 * carries an id; the worker answers each with exactly one `done` / `prepared` or `error`,
 * preceded for generations by one `prompt` and any number of `delta` messages.
 */
import type { QvlErrorCode } from '../errors.ts';
import type { ConstraintSpec } from '../generate/parse/json-constraint.ts';
import type { GenerationDefaults } from '../generate/generation-config.ts';
import type { BackendName, InstructionSet } from '../kernels/select.ts';
import type { ChatOptions, ChatResult, ModelInfo } from './qwen3vl.ts';
import type { PdfPartOptions } from './pdf-parts.ts';
import type { PreparedPrompt } from './prompt.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';
import type { QuantMode } from '../weights/quant-plan.ts';
import type { KvType } from '../kernels/kv.ts';
import type { RopeScalingOverride } from '../model/config.ts';

export interface WorkerInit {
  dir: string;
  backend: BackendName;
  threads?: number;
  /** the native kernel set, as `Qwen3VL.fromPretrained` takes it */
  isa?: InstructionSet;
  /** quantize float weights while loading, as `Qwen3VL.fromPretrained` does */
  quant?: QuantMode;
  /** KV cache type, context and YaRN override, as `Qwen3VL.fromPretrained` takes them */
  kvType?: KvType;
  context?: number;
  ropeScaling?: RopeScalingOverride;
  /** generations decoded together (continuous batching); default 1 */
  parallel?: number;
  /** prefix cache and vision-embedding cache budgets in bytes (0 or absent: off) */
  prefixCacheBytes?: number;
  visionCacheBytes?: number;
}

/** Media limits that can cross threads (no AbortSignal: cancellation travels as a message). */
export type WorkerMediaOptions = Omit<MediaSourceOptions, 'signal'> & {
  /** refuse images with more pixels than this before decoding (decompression bombs) */
  maxInputPixels?: number;
};

/** ChatOptions without functions: the logits processor is built inside the worker from `constraint`. */
export interface WorkerChatOptions extends Omit<ChatOptions, 'logitsProcessor' | 'signal' | 'media'> {
  media?: WorkerMediaOptions;
  /** constrained decoding: any JSON object, a JSON schema, or one call of the given tools */
  constraint?: ConstraintSpec;
  /** refuse prompts of this many tokens or more, and stop generation there */
  maxContext?: number;
  /** refuse requests with more images and videos than this (PDF pages count as images) */
  maxMediaItems?: number;
  /** how PDF parts are rendered */
  pdf?: PdfPartOptions;
}

export interface WorkerModelInfo extends ModelInfo {
  generation: GenerationDefaults;
  /** the model's context (max_position_embeddings) */
  maxPositions: number;
  /** the chat template opens `<think>` in the generation prompt (a Thinking model) */
  thinking: boolean;
}

/** What the host learns once the prompt is prepared, before the first token. */
export interface PromptInfo {
  promptTokens: number;
  media: PreparedPrompt['media'];
  /** the prompt ends inside `<think>`: output starts as reasoning */
  startsInThink: boolean;
}

/** The model thread's counters, sent after every request and about once a second while busy. */
export interface EngineStats {
  /** sequences decoding or prefilling, and waiting for a batch slot */
  running: number;
  waiting: number;
  /** KV cache blocks of the model's pool: in use, allocated (in use + free), bytes allocated */
  kvBlocksUsed: number;
  kvBlocksAllocated: number;
  kvBytes: number;
  /** decode steps run and the sequences they advanced (their ratio is the mean batch size) */
  decodeSteps: number;
  decodeRows: number;
  /** prompt tokens whose KV came from the prefix cache, and prompt tokens computed */
  cachedPromptTokens: number;
  computedPromptTokens: number;
  /** prompts computed within a batched step, beside the running sequences' tokens */
  joinedPrompts: number;
  /** vision-embedding cache lookups and hits */
  visionLookups: number;
  visionHits: number;
  /** bytes of vision-tower outputs the vision-embedding cache holds (within its budget) */
  visionCacheBytes: number;
}

export interface SerializedError {
  code: QvlErrorCode;
  message: string;
  detail: Record<string, unknown>;
}

export type HostMessage =
  | { type: 'generate'; id: number; messages: unknown; opts: WorkerChatOptions }
  | { type: 'prepare'; id: number; messages: unknown; opts: WorkerChatOptions }
  /** generation from a prompt prepared elsewhere (the server prepares off the model's thread) */
  | { type: 'generate-prepared'; id: number; prepared: PreparedPrompt; opts: WorkerChatOptions }
  | { type: 'abort'; id: number };

export type WorkerMessage =
  | { type: 'progress'; done: number; total: number }
  | { type: 'ready'; info: WorkerModelInfo }
  | { type: 'load-error'; error: SerializedError }
  | { type: 'prompt'; id: number; info: PromptInfo }
  | { type: 'delta'; id: number; text: string }
  | { type: 'done'; id: number; result: ChatResult }
  | { type: 'prepared'; id: number; prepared: PreparedPrompt }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'stats'; stats: EngineStats };
