import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { dequantize } from '../src/kernels/ts/dequant.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { readLinear } from '../src/weights/linear.ts';
import { detectQuantizedLinear, hasLinearWeight } from '../src/weights/quant/index.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readF32, readMatrix } from '../src/weights/tensor-reader.ts';
import { FORMATS, TINY, fakeMap, fileSource, openFormat, overlay } from './quant-util.ts';

/** What each fixture must turn into (format, zero points, act-order, group/block size). */
const EXPECT: Record<(typeof FORMATS)[number], { format: WeightData['format']; zeros?: boolean; gIdx?: boolean; group?: number; block?: [number, number] }> = {
  'fp8-block128': { format: 'fp8', block: [128, 128] },
  'fp8-channel-ct': { format: 'fp8', block: [1, -1] },
  'awq-gemm-g32': { format: 'q4', zeros: true, gIdx: false, group: 32 },
  'gptq-v1-g32': { format: 'q4', zeros: true, gIdx: false, group: 32 },
  'gptq-v1-actorder-sym-g32': { format: 'q4', zeros: true, gIdx: true, group: 32 },
  'gptq-v2-actorder-g32': { format: 'q4', zeros: true, gIdx: true, group: 32 },
  'ct-w4a16-sym-g128': { format: 'q4', zeros: false, gIdx: false, group: 128 },
  'ct-w4a16-asym-g32': { format: 'q4', zeros: true, gIdx: false, group: 32 },
  'ct-w4a16-actorder-g32': { format: 'q4', zeros: false, gIdx: true, group: 32 },
};

for (const name of FORMATS) {
  test(`${name}: every Linear loads through readLinear and dequantizes exactly to the reference`, () => {
    const fx = openFormat(name);
    const e = EXPECT[name];
    let modules = 0;
    for (const refName of fx.ref.tensors.keys()) {
      const [rows, cols] = fx.ref.info(refName).shape;
      const prefix = refName.slice(0, -'.weight'.length);
      const w = readLinear(fx.src, prefix, rows, cols, fx.qc);
      assert.equal(w.format, e.format, prefix);
      if (w.format === 'q4') {
        assert.equal(!!w.zeros, e.zeros, `${prefix} zero points`);
        assert.equal(!!w.gIdx, e.gIdx, `${prefix} act-order`);
        assert.equal(w.groupSize, e.group, `${prefix} group size`);
      }
      if (w.format === 'fp8') {
        assert.equal(w.blockRows, e.block![0]);
        assert.equal(w.blockCols, e.block![1] === -1 ? cols : e.block![1]);
      }
      const got = dequantize(w);
      const want = readF32(fx.ref, refName);
      let bad = 0;
      for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) bad++;
      assert.equal(bad, 0, `${prefix}: ${bad} of ${got.length} values differ from the reference`);
      modules++;
    }
    assert.equal(modules, 21, 'all 3 layers × 7 text Linears are in the fixture');
  });
}

test('modules a checkpoint leaves unquantized stay BF16 (vision tower, embeddings)', () => {
  const fx = openFormat('ct-w4a16-asym-g32');
  const tiny = SafetensorsFile.open(path.join(TINY, 'model.safetensors'));
  const src = overlay(fileSource(fx.src), fileSource(tiny));
  const prefix = 'model.visual.blocks.0.attn.qkv';
  assert.equal(detectQuantizedLinear(src, prefix, 96, 32, fx.qc), undefined);
  const w = readLinear(src, prefix, 96, 32, fx.qc);
  assert.equal(w.format, 'bf16');
  assert.deepEqual(dequantize(w), dequantize(readMatrix(tiny, `${prefix}.weight`, 96, 32)));
  assert.equal(hasLinearWeight(src, prefix), true);
  assert.equal(hasLinearWeight(src, 'model.language_model.layers.0.mlp.up_proj'), true, 'found through weight_packed');
  assert.equal(hasLinearWeight(src, 'lm_head'), false);
});

test('AWQ and GPTQ are told apart by the packed axis when config.json has no quantization_config', () => {
  for (const name of ['awq-gemm-g32', 'gptq-v1-g32'] as const) {
    const fx = openFormat(name);
    const prefix = 'model.language_model.layers.2.mlp.down_proj';
    const withCfg = dequantize(readLinear(fx.src, prefix, 64, 128, fx.qc));
    // without a config GPTQ defaults to v1 and the group size comes from the scales' shape
    const without = dequantize(readLinear(fx.src, prefix, 64, 128, undefined));
    assert.deepEqual(without, withCfg, name);
  }
});

test('compressed-tensors with in % 8 == 0 is used in place: q4 bytes are a view of the (mapped) file', () => {
  const fx = openFormat('ct-w4a16-asym-g32', { map: fakeMap });
  const prefix = 'model.language_model.layers.0.mlp.gate_proj';
  const w = readLinear(fx.src, prefix, 128, 64, fx.qc);
  assert.equal(w.format, 'q4');
  if (w.format !== 'q4') return;
  const packed = fx.src.bytes(`${prefix}.weight_packed`);
  assert.equal(w.qs.buffer, packed.buffer, 'same backing buffer');
  assert.equal(w.qs.byteOffset, packed.byteOffset);
  // F32 FP8 block scales are also views
  const f8 = openFormat('fp8-block128', { map: fakeMap });
  const w8 = readLinear(f8.src, prefix, 128, 64, f8.qc);
  assert.equal(w8.format === 'fp8' && w8.qs.buffer, f8.src.bytes(`${prefix}.weight`).buffer);
});

test('GPTQ v1 and v2 differ exactly by the stored zero offset', () => {
  // v1 stores zero − 1: reading v1 bytes as v2 must lower every zero point by one
  const fx = openFormat('gptq-v1-g32');
  const prefix = 'model.language_model.layers.1.self_attn.o_proj';
  const v1 = readLinear(fx.src, prefix, 64, 64, fx.qc);
  const v2 = readLinear(fx.src, prefix, 64, 64, { ...fx.qc, checkpoint_format: 'gptq_v2' });
  assert.ok(v1.format === 'q4' && v2.format === 'q4' && v1.zeros && v2.zeros);
  if (v1.format !== 'q4' || v2.format !== 'q4') return;
  assert.deepEqual(Array.from(v1.zeros!, (z) => z - 1), Array.from(v2.zeros!));
  assert.deepEqual(v1.qs, v2.qs);
});
