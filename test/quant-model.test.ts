/**
 * Quantized checkpoints through the whole model: the text Linears come from a quantized
 * fixture, every other tensor from the tiny BF16 model (as a checkpoint that leaves them
 * unquantized holds them). transformers ran the same dequantized weights
 * (tools/reference/make_quant_checkpoints.py → hf_case_b.safetensors), so the logits must match
 * it to float32 tolerance, not merely be "close".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadConfig } from '../src/model/config.ts';
import { Qwen3VLModel } from '../src/model/qwen3vl.ts';
import { loadModelWeights } from '../src/model/weights.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readF32, readInts } from '../src/weights/tensor-reader.ts';
import { TINY, argmax, cosine, fileSource, loadCase, openFormat, overlay } from './quant-util.ts';

const tiny = SafetensorsFile.open(path.join(TINY, 'model.safetensors'));
const { inputs, file: caseB } = loadCase('case_b_image');

for (const name of ['fp8-block128', 'awq-gemm-g32', 'ct-w4a16-asym-g32'] as const) {
  test(`${name}: the model runs on case_b and matches transformers on the same dequantized weights`, () => {
    const fx = openFormat(name);
    const cfg = loadConfig(fx.dir);
    const be = new TsBackend();
    const weights = loadModelWeights(overlay(fileSource(fx.src), fileSource(tiny)), cfg, be);
    assert.equal(weights.text.layers[0].up.format, name.startsWith('fp8') ? 'fp8' : 'q4');
    assert.equal(weights.vision.blocks[0].qkv.w.format, 'bf16', 'the vision tower stays BF16');
    const model = new Qwen3VLModel(cfg, weights, be);
    const L = inputs.ids.length;
    const V = cfg.text.vocabSize;
    const H = cfg.text.hiddenSize;
    // Full logits only for the last position; elsewhere the 512 reference ids are enough and
    // are computed here from the final hidden states and the (tied, BF16) embedding.
    let hidden = new Float32Array(0);
    const r = model.prefill(inputs, model.newCache({ type: 'f32' }), { trace: (stage, data) => stage === 'text.final_hidden' && (hidden = data.slice()) });
    assert.equal(hidden.length, L * H);
    const embed = readF32(tiny, 'model.language_model.embed_tokens.weight');

    const hf = SafetensorsFile.open(path.join(fx.dir, 'hf_case_b.safetensors'));
    const ids = readInts(hf, 'logits_sel_ids');
    const want = readF32(hf, 'logits_sel');
    const hfTop = readInts(hf, 'argmax');
    const sel = new Float32Array(L * ids.length);
    let maxDiff = 0;
    for (let p = 0; p < L; p++) {
      for (let j = 0; j < ids.length; j++) {
        let d = 0;
        for (let k = 0; k < H; k++) d += hidden[p * H + k] * embed[ids[j] * H + k];
        sel[p * ids.length + j] = d;
        maxDiff = Math.max(maxDiff, Math.abs(d - want[p * ids.length + j]));
      }
    }
    for (let j = 0; j < ids.length; j++) maxDiff = Math.max(maxDiff, Math.abs(r.logits[ids[j]] - want[(L - 1) * ids.length + j]));
    assert.ok(maxDiff < 1e-4, `max |logit − transformers| = ${maxDiff}`);
    assert.equal(argmax(r.logits, 0, V), hfTop[L - 1], 'same next token as transformers');

    // and how far quantization moved the model from the float one (HF's own logits)
    const floatSel = readF32(caseB, 'logits_sel');
    const floatTop = readInts(caseB, 'logits_top16_ids');
    let cosMin = 1;
    for (let p = 0; p < L; p++) {
      cosMin = Math.min(cosMin, cosine(sel.subarray(p * ids.length, (p + 1) * ids.length), floatSel.subarray(p * ids.length, (p + 1) * ids.length)));
    }
    let top1 = 0;
    for (let p = 0; p < L; p++) if (hfTop[p] === floatTop[p * 16]) top1++;
    console.log(`${name}: max |Δ| to transformers ${maxDiff.toExponential(1)}; vs the float model, min cosine over 512 logits/position ${cosMin.toFixed(5)}, top-1 agreement ${top1}/${L} (transformers, same weights)`);
    assert.ok(cosMin > (name.startsWith('fp8') ? 0.99 : 0.9), `cosine to the float model ${cosMin}`);
  });
}
