import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import { KvLayout, type KvType } from '../kernels/kv.ts';
import type { Qwen3VLConfig } from '../model/config.ts';
import { formatBytes } from '../util/format-bytes.ts';
import type { QuantMode } from '../weights/quant-plan.ts';

/** What a model needs in memory at a context length, and what the machine has. */
export interface MemoryPlan {
  /** weights as the kernels will hold them (estimated from the files and the quantization) */
  weightsBytes: number;
  kvType: KvType;
  kvBytesPerToken: number;
  /** the context this plan is for: prompt + answer tokens of one sequence */
  context: number;
  kvBytes: number;
  /** activations and scratch, a fixed allowance */
  workBytes: number;
  totalBytes: number;
  /** memory the process may use at all (RAM or its cgroup limit) */
  limitBytes: number;
  /** memory free now (MemAvailable: free pages plus reclaimable cache) */
  availableBytes: number;
  /** the context was capped below the model's own because more would not fit */
  capped: boolean;
  /** the model's position limit (after any YaRN override) */
  modelContext: number;
}

/** Weight bytes after load-time quantization, per stored byte of a 16-bit checkpoint. */
const QUANT_SHRINK: Record<QuantMode, number> = { q8: 34 / 64, q4: 0.36 };
/** Activations, logits and per-thread scratch: generous for the 4B shape at the default prefill chunk. */
const WORK_BYTES = 768 * 1024 * 1024;

function checkpointBytes(dir: string): { bytes: number; float16: boolean } {
  let bytes = 0;
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.safetensors')) bytes += fs.statSync(path.join(dir, f)).size;
  let float16 = true;
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const text = cfg.text_config as Record<string, unknown> | undefined;
    if (cfg.quantization_config || text?.quantization_config) float16 = false;
  } catch {
    // config problems are reported by the config loader
  }
  return { bytes, float16 };
}

function machineLimit(): number {
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  const total = os.totalmem();
  return constrained && constrained > 0 && constrained < total ? constrained : total;
}

/**
 * The memory a context needs. With no `context`, the model's own limit when it fits in the
 * memory available now, else the longest that does (whole KV blocks); a `context` that cannot
 * fit in the machine's memory at all is refused with what it needs and what would fit.
 */
export function planMemory(
  dir: string,
  cfg: Qwen3VLConfig,
  opts: { kvType: KvType; context?: number; quant?: QuantMode; blockTokens?: number; machine?: { limitBytes: number; availableBytes: number } },
): MemoryPlan {
  const t = cfg.text;
  const layout = new KvLayout(opts.kvType, t.numLayers, t.numKvHeads, t.headDim, opts.blockTokens);
  const ck = checkpointBytes(dir);
  const weightsBytes = Math.round(opts.quant && ck.float16 ? ck.bytes * QUANT_SHRINK[opts.quant] : ck.bytes);
  const perToken = layout.bytesPerToken;
  const limitBytes = opts.machine?.limitBytes ?? machineLimit();
  const availableBytes = Math.min(opts.machine?.availableBytes ?? os.freemem(), limitBytes);
  const modelContext = t.maxPositionEmbeddings;
  const plan = (context: number, capped: boolean): MemoryPlan => {
    const kvBytes = Math.ceil(context / layout.blockTokens) * layout.blockBytes;
    return { weightsBytes, kvType: opts.kvType, kvBytesPerToken: perToken, context, kvBytes, workBytes: WORK_BYTES, totalBytes: weightsBytes + kvBytes + WORK_BYTES, limitBytes, availableBytes, capped, modelContext };
  };
  const fitting = (budget: number) => Math.floor(Math.max(0, budget - weightsBytes - WORK_BYTES) / layout.blockBytes) * layout.blockTokens;
  if (opts.context === undefined) {
    const fits = fitting(availableBytes);
    return fits >= modelContext ? plan(modelContext, false) : plan(Math.max(layout.blockTokens, fits), true);
  }
  if (!(Number.isInteger(opts.context) && opts.context > 0)) {
    throw new QvlError('OPTION_INVALID', `the context must be a positive integer, got ${opts.context}`, { context: opts.context });
  }
  if (opts.context > modelContext) {
    throw new QvlError(
      'CONTEXT_TOO_LONG',
      `this model accepts ${modelContext.toLocaleString('en-US')} positions; a ${opts.context.toLocaleString('en-US')}-token context needs YaRN (--rope-scaling yarn --rope-factor ${Math.ceil(opts.context / modelContext)})`,
      { context: opts.context, modelContext },
    );
  }
  const p = plan(opts.context, false);
  if (p.totalBytes > limitBytes) {
    const fits = fitting(limitBytes);
    throw new QvlError(
      'OUT_OF_MEMORY',
      `a ${opts.context.toLocaleString('en-US')}-token context needs ${describeMemory(p)}, more than this machine's ${formatBytes(limitBytes)}; ` +
        (fits > 0 ? `at most ${fits.toLocaleString('en-US')} tokens fit with the ${opts.kvType} KV cache` : 'the weights alone do not fit') +
        (opts.kvType !== 'q8' ? ' (--kv-type q8 halves the KV cache)' : ''),
      { context: opts.context, needBytes: p.totalBytes, limitBytes, fitsTokens: fits },
    );
  }
  return p;
}

/** "2.63 GiB weights + 9.06 GiB KV (q8, 74.3 KiB/token) + 0.75 GiB work = 12.44 GiB" */
export function describeMemory(p: MemoryPlan): string {
  return `${formatBytes(p.weightsBytes)} weights + ${formatBytes(p.kvBytes)} KV (${p.kvType}, ${formatBytes(p.kvBytesPerToken)}/token) + ${formatBytes(p.workBytes)} work = ${formatBytes(p.totalBytes)}`;
}

/** The line the CLI prints before loading. */
export function describePlan(p: MemoryPlan): string {
  const ctx = `context ${p.context.toLocaleString('en-US')} tokens`;
  const cap = p.capped ? ` (the model accepts ${p.modelContext.toLocaleString('en-US')}; capped to what fits in the ${formatBytes(p.availableBytes)} available)` : '';
  const warn = !p.capped && p.totalBytes > p.availableBytes ? `; only ${formatBytes(p.availableBytes)} is free now` : '';
  return `memory: ${ctx}${cap} needs ${describeMemory(p)}${warn}`;
}
