import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isQvlError, type QvlErrorCode } from '../src/errors.ts';
import { readLinear } from '../src/weights/linear.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { tempDir } from './helpers/safetensors-bytes.ts';
import { EditableSource, openFormat } from './quant-util.ts';

const L0 = 'model.language_model.layers.0';
const UP = `${L0}.mlp.up_proj`; // [128, 64]
const DOWN = `${L0}.mlp.down_proj`; // [64, 128]

function fails(fn: () => unknown, code: QvlErrorCode, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isQvlError(e), `expected a QvlError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `"${e.message}" should mention "${p}"`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

function edit(name: string) {
  const fx = openFormat(name);
  return { fx, src: new EditableSource(fx.src) };
}

test('AWQ: missing, misshapen or unsupported tensors are refused by name', () => {
  let { fx, src } = edit('awq-gemm-g32');
  src.remove(`${UP}.scales`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.scales`, 'AWQ');

  ({ fx, src } = edit('awq-gemm-g32'));
  src.remove(`${UP}.qzeros`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.qzeros`);

  ({ fx, src } = edit('awq-gemm-g32'));
  src.relabel(`${UP}.qweight`, 'I32', [32, 32]);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_SHAPE', `${UP}.qweight`, '[64, 16]');

  ({ fx, src } = edit('awq-gemm-g32'));
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, group_size: 128 }), 'QUANT_INVALID', 'not a multiple of group_size 128');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, group_size: 16 }), 'TENSOR_SHAPE', `${UP}.scales`, 'group_size 16');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, bits: 8 }), 'QUANT_INVALID', 'bits is 8');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, version: 'gemv' }), 'QUANT_INVALID', '"gemv"');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, group_size: 'x' }), 'QUANT_INVALID', 'group_size must be an integer');

  ({ fx, src } = edit('awq-gemm-g32'));
  src.relabel(`${UP}.scales`, 'I32', [2, 64]);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', `${UP}.scales`, 'I32');
});

test('AWQ: a non-finite scale is refused with its position', () => {
  const { fx, src } = edit('awq-gemm-g32');
  const s = new Uint16Array(src.bytes(`${UP}.scales`).slice().buffer);
  s[5] = 0x7e00; // f16 NaN
  src.set(`${UP}.scales`, 'F16', [2, 128], s);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', 'non-finite scale', 'flat index 5');
});

test('GPTQ: g_idx out of range, wrong bits/format, missing and misshapen tensors', () => {
  let { fx, src } = edit('gptq-v1-actorder-sym-g32');
  const g = new Int32Array(src.bytes(`${UP}.g_idx`).slice().buffer);
  g[7] = 2; // only groups 0 and 1 exist for 64 inputs in groups of 32
  src.set(`${UP}.g_idx`, 'I32', [64], g);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', `${UP}.g_idx[7] = 2`, 'groups 0..1');

  ({ fx, src } = edit('gptq-v1-g32'));
  src.set(`${UP}.g_idx`, 'I32', [63], new Int32Array(63));
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_SHAPE', `${UP}.g_idx`);

  ({ fx, src } = edit('gptq-v1-g32'));
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, bits: 3 }), 'QUANT_INVALID', 'bits is 3');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, checkpoint_format: 'marlin' }), 'QUANT_INVALID', '"marlin"');
  fails(() => readLinear(src, UP, 128, 64, { ...fx.qc, group_size: 16 }), 'TENSOR_SHAPE', `${UP}.scales`);
  src.remove(`${UP}.qzeros`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.qzeros`, 'GPTQ');

  ({ fx, src } = edit('gptq-v1-g32'));
  fails(() => readLinear(src, UP, 128, 60, fx.qc), 'QUANT_INVALID', 'in_features 60 is not a multiple of 8');
  fails(() => readLinear(src, UP, 124, 64, fx.qc), 'QUANT_INVALID', 'out_features 124');
});

test('compressed-tensors: bits, format, zero points, weight_shape and group count are checked', () => {
  let { fx, src } = edit('ct-w4a16-asym-g32');
  const groups = fx.qc.config_groups as Record<string, { weights: Record<string, unknown> }>;
  const withWeights = (w: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    ...fx.qc,
    ...extra,
    config_groups: { group_0: { ...groups.group_0, weights: { ...groups.group_0.weights, ...w } } },
  });
  fails(() => readLinear(src, UP, 128, 64, withWeights({ num_bits: 8 })), 'QUANT_INVALID', 'num_bits is 8');
  fails(() => readLinear(src, UP, 128, 64, withWeights({}, { format: 'marlin-24' })), 'QUANT_INVALID', '"marlin-24"');
  fails(() => readLinear(src, UP, 128, 64, withWeights({ group_size: 16 })), 'QUANT_INVALID', '2 groups per row', 'group_size 16');
  src.remove(`${UP}.weight_zero_point`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.weight_zero_point`);

  ({ fx, src } = edit('ct-w4a16-asym-g32'));
  src.set(`${UP}.weight_shape`, 'I64', [2], new BigInt64Array([128n, 60n]));
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', 'weight_shape says [128, 60]');

  ({ fx, src } = edit('ct-w4a16-asym-g32'));
  src.remove(`${UP}.weight_scale`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.weight_scale`);

  ({ fx, src } = edit('ct-w4a16-asym-g32'));
  src.relabel(`${UP}.weight_packed`, 'I32', [64, 16]);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_SHAPE', `${UP}.weight_packed`, '[128, 8]');

  ({ fx, src } = edit('ct-w4a16-actorder-g32'));
  const g = new Int32Array(src.bytes(`${UP}.weight_g_idx`).slice().buffer);
  g[0] = -3;
  src.set(`${UP}.weight_g_idx`, 'I32', [64], g);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', `${UP}.weight_g_idx[0] = -3`);
});

test('FP8: scale grid, weight dtype, block size and missing scales are checked', () => {
  let { fx, src } = edit('fp8-block128');
  src.set(`${UP}.weight_scale_inv`, 'F32', [2, 1], new Float32Array([1, 1]));
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_SHAPE', `${UP}.weight_scale_inv`, '[1, 1]', '128×128');
  // a 64-wide block grid needs 2 × 1 scales for [128, 64]
  fails(() => readLinear(fx.src, UP, 128, 64, { ...fx.qc, weight_block_size: [64, 64] }), 'TENSOR_SHAPE', '[2, 1]');
  fails(() => readLinear(fx.src, UP, 128, 64, { ...fx.qc, weight_block_size: [128] }), 'QUANT_INVALID', 'weight_block_size');

  ({ fx, src } = edit('fp8-block128'));
  src.remove(`${UP}.weight_scale_inv`);
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'TENSOR_MISSING', `${UP}.weight_scale_inv`, 'F8_E4M3');

  ({ fx, src } = edit('fp8-block128'));
  src.set(`${UP}.weight`, 'BF16', [128, 64], new Uint16Array(128 * 64));
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', `${UP}.weight`, 'BF16', 'F8_E4M3');

  ({ fx, src } = edit('fp8-block128'));
  src.set(`${UP}.weight_scale_inv`, 'F32', [1, 1], new Float32Array([Infinity]));
  fails(() => readLinear(src, UP, 128, 64, fx.qc), 'QUANT_INVALID', 'non-finite scale');

  ({ fx, src } = edit('fp8-channel-ct'));
  src.relabel(`${DOWN}.weight_scale`, 'BF16', [32, 2]);
  fails(() => readLinear(src, DOWN, 64, 128, fx.qc), 'TENSOR_SHAPE', `${DOWN}.weight_scale`);
});

test('integer .weight tensors of unsupported layouts (int-quantized W8A8, bitsandbytes) are refused by name', () => {
  const { src } = edit('fp8-channel-ct');
  src.set(`${UP}.weight`, 'I8', [128, 64], new Int8Array(128 * 64));
  fails(() => readLinear(src, UP, 128, 64, { quant_method: 'compressed-tensors', format: 'int-quantized' }), 'QUANT_INVALID', `${UP}.weight is I8`, '"compressed-tensors"');
  src.remove(`${UP}.weight_scale`).set(`${UP}.weight`, 'U8', [4096, 1], new Uint8Array(4096));
  fails(() => readLinear(src, UP, 128, 64, { quant_method: 'bitsandbytes' }), 'QUANT_INVALID', 'is U8', '"bitsandbytes"');
});

test('a truncated quantized checkpoint file is refused when opened', () => {
  const dir = tempDir();
  const src = path.join(openFormat('awq-gemm-g32').dir, 'model.safetensors');
  const bytes = fs.readFileSync(src);
  const cut = path.join(dir, 'model.safetensors');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
  fails(() => SafetensorsFile.open(cut), 'SAFETENSORS_INVALID', 'truncated');
  fs.rmSync(dir, { recursive: true, force: true });
});
