/**
 * GET /metrics: Prometheus text exposition of one server's line, model batch, KV pool, caches
 * and per-request figures. Each server has its own Registry (several servers may share a
 * process); the model's figures are read from the engine at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats } from '../api/worker-protocol.ts';
import type { ServerEngine } from './engine.ts';
import type { Scheduler } from './scheduler.ts';

/** How a chat request ended: the model's finish reason, or what cut it short. */
export type Outcome = 'stop' | 'length' | 'aborted' | 'error';

export interface MetricsSource {
  engine: Pick<ServerEngine, 'stats'>;
  scheduler: Pick<Scheduler, 'running' | 'queued' | 'preparing'>;
}

/** One chat request from arrival to its last byte; `end` counts it once. */
export interface RequestRecord {
  firstToken(): void;
  end(outcome: Outcome, status: number, usage?: { promptTokens: number; cachedTokens?: number; completionTokens: number }): void;
}

const WINDOW_S = 10;

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'outcome' | 'status'>;
  private readonly promptTokens: Counter;
  private readonly cachedTokens: Counter;
  private readonly generatedTokens: Counter;
  private readonly ttft: Histogram;
  private readonly duration: Histogram;
  /** finished decodes of the last WINDOW_S seconds: [first token, end] in ms, and their tokens */
  private recent: { from: number; to: number; tokens: number }[] = [];
  private promptSum = 0;
  private cachedSum = 0;

  constructor(src: MetricsSource) {
    const registers = [this.registry];
    // engine figures are undefined until the model thread first reports
    const stats = (): EngineStats | undefined => src.engine.stats?.();
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    // the engine's own running totals: they restart from 0 with a new model thread, which
    // Prometheus treats as a counter reset
    const engineCounter = (name: string, help: string, key: keyof EngineStats) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const s = stats();
          if (!s) return;
          this.reset();
          this.inc(s[key]);
        },
      });
    const ratio = (num: number, den: number) => (den > 0 ? num / den : 0);

    gauge('qvl_requests_running', 'Chat requests holding the model (one of its parallel slots).', () => src.scheduler.running);
    gauge('qvl_requests_waiting', 'Chat requests prepared and waiting for a model slot.', () => src.scheduler.queued);
    gauge('qvl_requests_preparing', 'Chat requests admitted and being prepared (media fetched, decoded, tokenized).', () => src.scheduler.preparing);
    gauge('qvl_sequences_running', "Sequences decoding or prefilling in the model's batch.", () => stats()?.running ?? 0);
    gauge('qvl_sequences_waiting', "Sequences waiting for a slot in the model's batch.", () => stats()?.waiting ?? 0);
    gauge('qvl_kv_blocks_used', "KV cache blocks in use in the model's pool.", () => stats()?.kvBlocksUsed ?? 0);
    gauge('qvl_kv_blocks_allocated', "KV cache blocks allocated in the model's pool (used and free).", () => stats()?.kvBlocksAllocated ?? 0);
    gauge('qvl_kv_bytes', "Bytes allocated to the model's KV cache pool.", () => stats()?.kvBytes ?? 0);
    gauge('qvl_vision_cache_bytes', 'Bytes of vision-tower outputs held by the vision-embedding cache.', () => stats()?.visionCacheBytes ?? 0);

    this.requests = new Counter({
      name: 'qvl_requests_total',
      help: 'Chat requests finished, by outcome (stop, length, aborted, error) and HTTP status class.',
      labelNames: ['outcome', 'status'] as const,
      registers,
    });
    this.promptTokens = new Counter({ name: 'qvl_prompt_tokens_total', help: 'Prompt tokens of answered chat requests.', registers });
    this.generatedTokens = new Counter({ name: 'qvl_generation_tokens_total', help: 'Tokens generated for answered chat requests.', registers });
    this.cachedTokens = new Counter({ name: 'qvl_prompt_tokens_cached_total', help: 'Prompt tokens of answered chat requests served from the prefix cache.', registers });
    engineCounter('qvl_prefill_tokens_total', 'Prompt tokens the model computed (not from the prefix cache), failed requests included.', 'computedPromptTokens');
    engineCounter('qvl_decode_steps_total', 'Batched decode steps run by the model.', 'decodeSteps');
    engineCounter('qvl_decode_rows_total', 'Sequences advanced by decode steps (rows / steps is the mean batch size).', 'decodeRows');
    engineCounter('qvl_prompts_joined_total', 'Prompts computed within a batched step, beside the running answers\' tokens (not prefilled alone).', 'joinedPrompts');
    engineCounter('qvl_vision_cache_lookups_total', 'Vision-embedding cache lookups.', 'visionLookups');
    engineCounter('qvl_vision_cache_hits_total', 'Vision-embedding cache hits.', 'visionHits');
    // from the same usages as the two counters, so it agrees with their rates
    gauge('qvl_prefix_cache_hit_ratio', 'Share of answered prompt tokens served from the prefix cache since the server started.', () =>
      ratio(this.cachedSum, this.promptSum),
    );
    gauge('qvl_vision_cache_hit_ratio', 'Share of vision-embedding cache lookups that hit since the model thread started.', () => {
      const s = stats();
      return s ? ratio(s.visionHits, s.visionLookups) : 0;
    });
    gauge('qvl_generation_tokens_per_second', `Tokens generated per second over the last ${WINDOW_S} s (finished requests, spread over their decode time).`, () => this.tokensPerSecond());

    this.ttft = new Histogram({
      name: 'qvl_time_to_first_token_seconds',
      help: "Seconds from a chat request's arrival to its first generated text.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.duration = new Histogram({
      name: 'qvl_request_duration_seconds',
      help: "Seconds from a chat request's arrival to the end of its answer (or error).",
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  startRequest(): RequestRecord {
    const t0 = performance.now();
    let first: number | undefined;
    let ended = false;
    return {
      firstToken: () => {
        if (first !== undefined || ended) return;
        first = performance.now();
        this.ttft.observe((first - t0) / 1000);
      },
      end: (outcome, status, usage) => {
        if (ended) return;
        ended = true;
        const now = performance.now();
        this.requests.inc({ outcome, status: `${Math.floor(status / 100)}xx` });
        this.duration.observe((now - t0) / 1000);
        if (!usage) return;
        this.promptTokens.inc(usage.promptTokens);
        this.cachedTokens.inc(usage.cachedTokens ?? 0);
        this.promptSum += usage.promptTokens;
        this.cachedSum += usage.cachedTokens ?? 0;
        this.generatedTokens.inc(usage.completionTokens);
        if (usage.completionTokens > 0) this.recent.push({ from: first ?? t0, to: now, tokens: usage.completionTokens });
      },
    };
  }

  /** Generated tokens in the window / its length, each request's tokens spread evenly over its decode. */
  private tokensPerSecond(): number {
    const now = performance.now();
    const start = now - WINDOW_S * 1000;
    this.recent = this.recent.filter((r) => r.to > start);
    let tokens = 0;
    for (const r of this.recent) {
      const span = r.to - r.from;
      tokens += span <= 0 ? r.tokens : (r.tokens * (r.to - Math.max(r.from, start))) / span;
    }
    return tokens / WINDOW_S;
  }
}
