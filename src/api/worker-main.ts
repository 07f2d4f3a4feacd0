/**
 * The inference worker: owns one loaded model and streams text deltas to the host. Up to
 * `parallel` generations decode together (the model's batcher); the host sends no more than that
 * at once. Generation yields to the event loop between steps, so an `abort` message is seen
 * before the next token is computed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { QvlError } from '../errors.ts';
import { createConstraint } from '../generate/parse/json-constraint.ts';
import { resolveLimits } from '../generate/limits.ts';
import { promptOpensThink, THINK_CLOSE } from '../generate/parse/think.ts';
import type { PreparedPrompt } from './prompt.ts';
import { Qwen3VL, type ChatOptions } from './qwen3vl.ts';
import { serializeError } from './serialized-error.ts';
import type { HostMessage, WorkerInit, WorkerMessage } from './worker-protocol.ts';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (m: WorkerMessage) => port.postMessage(m);
const running = new Map<number, AbortController>();

async function main(): Promise<void> {
  let model: Qwen3VL;
  try {
    let last = -1;
    model = await Qwen3VL.fromPretrained(init.dir, {
      backend: init.backend,
      threads: init.threads,
      isa: init.isa,
      quant: init.quant,
      kvType: init.kvType,
      context: init.context,
      ropeScaling: init.ropeScaling,
      parallel: init.parallel ?? 1,
      prefixCacheBytes: init.prefixCacheBytes,
      visionCacheBytes: init.visionCacheBytes,
      onProgress: (done, total) => {
        done = Math.min(done, total);
        // at most ~100 progress messages
        const pct = Math.floor((100 * done) / Math.max(1, total));
        if (pct !== last) {
          last = pct;
          post({ type: 'progress', done, total });
        }
      },
    });
  } catch (e) {
    post({ type: 'load-error', error: serializeError(e) });
    return;
  }
  const thinking = promptOpensThink(model.template.render([{ role: 'user', content: 'x' }], { addGenerationPrompt: true }));
  post({
    type: 'ready',
    info: { ...model.info(), generation: model.generation, maxPositions: model.model.contextLength, thinking },
  });

  // counters for the host's /metrics: after every request, and once a second while any runs
  const sendStats = () => post({ type: 'stats', stats: model.stats() });
  setInterval(() => {
    if (running.size) sendStats();
  }, 1000).unref();
  sendStats();
  port.on('message', (m: HostMessage) => {
    if (m.type === 'abort') {
      running.get(m.id)?.abort();
      return;
    }
    void handle(model, m);
  });
}

async function handle(model: Qwen3VL, m: Extract<HostMessage, { type: 'generate' | 'prepare' | 'generate-prepared' }>): Promise<void> {
  const ac = new AbortController();
  running.set(m.id, ac);
  try {
    const { constraint, maxContext, maxMediaItems, pdf, ...rest } = m.opts;
    const opts: ChatOptions = { ...rest, media: { ...rest.media, signal: ac.signal }, signal: ac.signal };
    let prepared: PreparedPrompt;
    if (m.type === 'generate-prepared') prepared = m.prepared;
    else {
      // the plan counts PDF pages against maxMediaItems before reading any image or video
      prepared = await model.prepare(m.messages, { ...opts, pdf, maxMediaItems });
      if (m.type === 'prepare') {
        post({ type: 'prepared', id: m.id, prepared });
        return;
      }
    }
    const promptTokens = prepared.ids.length;
    const maxNew = resolveLimits(promptTokens, { maxContext, maxNewTokens: opts.maxNewTokens ?? model.generation.maxNewTokens ?? 1024 }, model.model.contextLength).maxNewTokens;
    const startsInThink = promptOpensThink(prepared.text);
    post({ type: 'prompt', id: m.id, info: { promptTokens, media: prepared.media, startsInThink } });
    if (constraint) {
      // A grammar leaves no room for free reasoning: a Thinking model closes its think block at once.
      const prefix = startsInThink ? `${THINK_CLOSE}\n\n` : undefined;
      opts.logitsProcessor = createConstraint(model.tokenizer, constraint, model.generation.eosTokenIds, { prefix }).logitsProcessor();
    }
    const gen = model.generateText(prepared, { ...opts, maxNewTokens: maxNew });
    for (;;) {
      const r = await gen.next();
      if (r.done) {
        post({ type: 'done', id: m.id, result: r.value });
        return;
      }
      post({ type: 'delta', id: m.id, text: r.value });
    }
  } catch (e) {
    post({ type: 'error', id: m.id, error: serializeError(ac.signal.aborted && !(e instanceof QvlError && e.code === 'ABORTED') ? new QvlError('ABORTED', 'generation was cancelled') : e) });
  } finally {
    running.delete(m.id);
    post({ type: 'stats', stats: model.stats() });
  }
}

void main();
