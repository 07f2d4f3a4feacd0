import type { Backend } from '../kernels/backend.ts';
import type { WeightData } from '../kernels/weight.ts';
import { loadConfig, type Qwen3VLConfig } from '../model/config.ts';
import { Qwen3VLModel, type KvOptions, type ReuseOptions } from '../model/qwen3vl.ts';
import { loadModelWeights } from '../model/weights.ts';
import { canonicalView } from '../weights/names.ts';
import type { WeightConvert } from '../weights/quant-plan.ts';
import { SafetensorsCheckpoint, type MapFile } from '../weights/safetensors.ts';

export interface LoadModelOptions {
  backend: Backend;
  /** memory-map weight files instead of reading them (native backend) */
  map?: MapFile;
  convert?: WeightConvert;
  /** called with each source weight that `convert` replaced (releases mapped pages: BackendChoice.release) */
  release?: (w: WeightData) => void;
  onProgress?: (done: number, total: number) => void;
  config?: Qwen3VLConfig;
  kv?: KvOptions;
  reuse?: ReuseOptions;
}

/** Reads config.json and the safetensors of a model folder into a ready model. */
export function loadModelFromDir(dir: string, opts: LoadModelOptions): Qwen3VLModel {
  const cfg = opts.config ?? loadConfig(dir);
  const ck = SafetensorsCheckpoint.open(dir, { map: opts.map });
  try {
    const weights = loadModelWeights(canonicalView(ck), cfg, opts.backend, { convert: opts.convert, release: opts.release, onProgress: opts.onProgress });
    return new Qwen3VLModel(cfg, weights, opts.backend, opts.kv, opts.reuse);
  } finally {
    // Unmapped readers copy what they need; mapped tensors stay alive through their ArrayBuffer.
    ck.close();
  }
}
