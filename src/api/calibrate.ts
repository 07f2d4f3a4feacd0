import { QvlError } from '../errors.ts';
import type { PreparedWeight } from '../kernels/backend.ts';
import { selectBackend, type BackendName } from '../kernels/select.ts';
import type { Q4Weight } from '../kernels/weight.ts';
import type { ModelInputs, PrefillRun } from '../model/qwen3vl.ts';
import { backendGemm, gptqQuantizeQ4, inverseHessianFactor } from '../weights/quant/gptq-quantize.ts';
import { GptqScratch } from '../weights/quant/gptq-scratch.ts';
import { canonicalView } from '../weights/names.ts';
import { SafetensorsCheckpoint } from '../weights/safetensors.ts';
import { makeQuantConvert } from '../weights/quant-plan.ts';
import { readMatrix } from '../weights/tensor-reader.ts';
import { InputHessian, recordingBackend } from './hessians.ts';
import { Qwen3VL } from './qwen3vl.ts';

/**
 * KV blocks of the calibration runs: every sample's prefill is held at once, paused between
 * layers, and never goes back to a layer it has left, so each keeps one layer's keys and values
 * (a layer window), in blocks smaller than the model's 256 tokens (samples are ~100 tokens).
 */
const CALIBRATION_KV = { blockTokens: 16, layerWindow: true };

/** One calibration conversation: a user turn (OpenAI or HF content parts) and, optionally, the answer to run after it. */
export interface CalibrationSample {
  messages: unknown[];
  /** the assistant's reply, run after the prompt as if generated (its tokens are calibration inputs too) */
  answer?: string;
}

export interface CalibrateOptions {
  /** q4 columns per scale (32 or 128); default 32 */
  groupSize?: number;
  /** GPTQ's damping, a fraction of the Hessian's mean diagonal; default 0.01 */
  damp?: number;
  backend?: BackendName;
  threads?: number;
  onProgress?: (stage: 'prompts' | 'layers', done: number, total: number) => void;
}

export interface CalibrationResult {
  /** the text decoder's q4 matrices, by Linear name (`model.language_model.layers.<l>.self_attn.q_proj` …) */
  weights: Map<string, Q4Weight>;
  samples: number;
  /** calibration tokens (prompt and answer) that every matrix's Hessian summed */
  tokens: number;
}

/** The matrices that share an input, in the order the layer runs them. */
const GROUPS = [
  ['attn', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']],
  ['attn_out', ['self_attn.o_proj']],
  ['mlp', ['mlp.gate_proj', 'mlp.up_proj']],
  ['mlp_out', ['mlp.down_proj']],
] as const;

const FIELD = { 'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k', 'self_attn.v_proj': 'v', 'self_attn.o_proj': 'o', 'mlp.gate_proj': 'gate', 'mlp.up_proj': 'up', 'mlp.down_proj': 'down' } as const;

/**
 * GPTQ-quantizes the text decoder of a float model folder to q4, from the inputs its matrices
 * see on `samples` (docs/quantization.md, "Calibrated q4"). The model runs every sample's
 * prompt (and answer) one decoder layer at a time, all samples in step, so that only one
 * layer's Hessians are held at once: a layer's four input Hessians (q/k/v, o, gate/up, down)
 * are summed while every sample passes it, its seven matrices are quantized from the
 * checkpoint's float weights, the Hessians are dropped, and every sample runs the layer again on
 * its quantized matrices before going on to the next.
 */
export async function calibrateQ4(modelDir: string, samples: readonly CalibrationSample[], opts: CalibrateOptions = {}): Promise<CalibrationResult> {
  if (samples.length === 0) throw new QvlError('OPTION_INVALID', 'calibration needs at least one sample', { samples: 0 });
  const damp = opts.damp ?? 0.01;
  if (!(Number.isFinite(damp) && damp > 0)) throw new QvlError('OPTION_INVALID', `damp must be a positive number, got ${damp}`, { damp });
  const groupSize = opts.groupSize ?? 32;
  if (groupSize !== 32 && groupSize !== 128) throw new QvlError('OPTION_INVALID', `q4 group size must be 32 or 128, got ${groupSize}`, { groupSize });

  const inner = (await selectBackend(opts.backend ?? 'auto', { threads: opts.threads })).backend;
  // the matrices of the layer being calibrated, by the input they share
  let active = new Map<PreparedWeight, InputHessian>();
  const backend = recordingBackend(inner, (ws, x, n) => {
    const h = active.get(ws[0]);
    if (h) h.add(x, n);
  });
  // GPTQ's products on the backend's float32 GEMM (plain loops would take hours at the 4B shape)
  const gemm = backendGemm(inner);
  // GPTQ's working arrays, reused layer after layer (the shapes repeat)
  const scratch = new GptqScratch();
  // The model loads as round-to-nearest q4 mode has it (the 4B text decoder in 2 GB rather than
  // 7); each layer's matrices are replaced by their GPTQ form once quantized, so every layer's
  // inputs carry the quantization error of the calibrated layers before it.
  const model = await Qwen3VL.fromPretrained(modelDir, { backend, convert: makeQuantConvert({ mode: 'q4', groupSize }) });
  const cfg = model.model.cfg.text;

  // every sample's prefill, paused after each decoder layer; the trace names the layer that just ran
  const runs: { run: PrefillRun; layer: number; done: boolean }[] = [];
  let tokens = 0;
  const imEnd = model.tokenizer.encode('<|im_end|>');
  for (const [i, s] of samples.entries()) {
    const prepared = await model.prepare(s.messages);
    const ids = s.answer === undefined ? Array.from(prepared.ids) : [...prepared.ids, ...model.tokenizer.encode(s.answer), ...imEnd];
    const inputs: ModelInputs = {
      ids: Int32Array.from(ids),
      pixelValues: prepared.pixelValues,
      imageGrids: prepared.imageGrids,
      pixelValuesVideos: prepared.pixelValuesVideos,
      videoGrids: prepared.videoGrids,
    };
    const state = { run: undefined as unknown as PrefillRun, layer: -1, done: false };
    state.run = model.model.prefillRun(inputs, model.model.newCache(CALIBRATION_KV), {
      lean: true,
      trace: (stage) => {
        if (stage.startsWith('text.layer_input.')) state.layer = Number(stage.slice('text.layer_input.'.length));
      },
    });
    runs.push(state);
    tokens += ids.length;
    opts.onProgress?.('prompts', i + 1, samples.length);
  }

  const ck = SafetensorsCheckpoint.open(modelDir);
  const weights = new Map<string, Q4Weight>();
  try {
    const src = canonicalView(ck);
    const H = cfg.hiddenSize;
    const qDim = cfg.numHeads * cfg.headDim;
    const inputWidth = { attn: H, attn_out: qDim, mlp: H, mlp_out: cfg.intermediateSize };
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const shape = { 'self_attn.q_proj': qDim, 'self_attn.k_proj': kvDim, 'self_attn.v_proj': kvDim, 'self_attn.o_proj': H, 'mlp.gate_proj': cfg.intermediateSize, 'mlp.up_proj': cfg.intermediateSize, 'mlp.down_proj': H };
    for (let l = 0; l < cfg.numLayers; l++) {
      const lw = model.model.text.w.layers[l];
      const hessians = new Map<string, InputHessian>();
      active = new Map();
      for (const [input, ms] of GROUPS) {
        const h = new InputHessian(inputWidth[input], gemm, scratch, input);
        hessians.set(input, h);
        active.set(lw[FIELD[ms[0]]], h);
      }
      // each sample runs layer l (and, before layer 0, its vision tower)
      for (const r of runs) {
        while (!r.done && r.layer < l) r.done = r.run.next().done === true;
        if (r.layer !== l) throw new QvlError('INTERNAL', `calibration: a prefill stopped before decoder layer ${l}`, { layer: l });
        // the step that traced layer l's input returns after the layer ran
      }
      active = new Map();
      for (const [input, ms] of GROUPS) {
        const h = hessians.get(input)!;
        h.flush();
        const u = inverseHessianFactor(h.h, h.n, { damp, gemm, scratch, consumeH: true });
        hessians.delete(input);
        for (const m of ms) {
          const name = `model.language_model.layers.${l}.${m}`;
          const q = gptqQuantizeQ4(readMatrix(src, `${name}.weight`, shape[m], inputWidth[input]), u, { groupSize, gemm, scratch });
          weights.set(name, q);
          const rtn = lw[FIELD[m]];
          lw[FIELD[m]] = backend.prepare(q);
          backend.release?.(rtn);
        }
      }
      // Layer l runs again on its GPTQ weights, so that layer l + 1's inputs are those the
      // calibrated model gives it (GPTQ's sequential order). Layer l's own Hessians came from a run
      // on its round-to-nearest matrices: quantizing q/k/v, o, gate/up and down each after a run
      // on the GPTQ forms of the ones before them, or gathering on the float layer, measured no
      // better on the demo.
      if (l + 1 < cfg.numLayers) {
        for (const r of runs) {
          r.run.next(true);
          if (r.layer !== l) throw new QvlError('INTERNAL', `calibration: decoder layer ${l} did not run again`, { layer: l });
        }
      }
      // no run comes back to layer l: its prepared copies go (`weights` keeps the codes), which
      // spares a second copy of the whole calibrated decoder by the last layer
      for (const [, ms] of GROUPS) for (const m of ms) backend.release?.(lw[FIELD[m]]);
      opts.onProgress?.('layers', l + 1, cfg.numLayers);
    }
  } finally {
    ck.close();
    for (const r of runs) r.run.return(undefined as never);
  }
  return { weights, samples: samples.length, tokens };
}
