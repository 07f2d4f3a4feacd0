/**
 * A preparation worker: holds a model's tokenizer, chat template and processor configuration (no
 * weights) and prepares requests, many at once: media downloads overlap, and decoding, resizing
 * and tokenizing run here rather than on the host's event loop or the model's thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { QvlError } from '../errors.ts';
import type { PrepInit, PrepJob, PrepOptions, PrepReply } from './prep-protocol.ts';
import { estimatePromptCost } from './prompt-cost.ts';
import { loadPromptParts } from './prompt-parts.ts';
import { preparePrompt, type PreparedPrompt, type PromptParts } from './prompt.ts';
import { serializeError } from './serialized-error.ts';

const port = parentPort!;
const init = workerData as PrepInit;
const post = (m: PrepReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const running = new Map<number, AbortController>();

/** Whole buffers of a prepared prompt, moved to the host instead of copied. */
function buffersOf(p: PreparedPrompt): ArrayBuffer[] {
  return [p.ids, p.pixelValues, p.pixelValuesVideos]
    .filter((a): a is Int32Array | Float32Array => a !== undefined && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength)
    .map((a) => a.buffer as ArrayBuffer);
}

async function run(parts: PromptParts, job: Extract<PrepJob, { type: 'prepare' | 'cost' }>): Promise<void> {
  const ac = new AbortController();
  running.set(job.id, ac);
  try {
    const o: PrepOptions & { media: { signal: AbortSignal } } = { ...job.opts, media: { ...job.opts.media, signal: ac.signal } };
    if (job.type === 'cost') {
      const { maxMediaItems: _, ...costOpts } = o;
      post({ type: 'cost', id: job.id, cost: await estimatePromptCost(parts, job.messages, costOpts) });
      return;
    }
    // the plan counts PDF pages against maxMediaItems before any image or video is read
    const prepared = await preparePrompt(parts, job.messages, o);
    post({ type: 'prepared', id: job.id, prepared }, buffersOf(prepared));
  } catch (e) {
    const err = ac.signal.aborted && !(e instanceof QvlError && e.code === 'ABORTED') ? new QvlError('ABORTED', 'preparation was cancelled') : e;
    post({ type: 'error', id: job.id, error: serializeError(err) });
  } finally {
    running.delete(job.id);
  }
}

async function main(): Promise<void> {
  let parts: PromptParts;
  try {
    parts = await loadPromptParts(init.dir);
  } catch (e) {
    post({ type: 'load-error', error: serializeError(e) });
    return;
  }
  port.on('message', (m: PrepJob) => {
    if (m.type === 'abort') running.get(m.id)?.abort();
    else void run(parts, m);
  });
  post({ type: 'ready' });
}

void main();
