/**
 * Widths that are not multiples of the group or block (8B/32B vision MLPs are 4304 wide):
 * formats that can express a partial group or block read it; AutoAWQ, whose scale layout
 * cannot, is refused. Expected values come straight from each format's definition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import { dequantize } from '../src/kernels/ts/dequant.ts';
import { E4M3_TABLE } from '../src/kernels/dtypes.ts';
import { readLinear } from '../src/weights/linear.ts';
import type { TensorInfo } from '../src/weights/safetensors.ts';
import type { TensorSource } from '../src/weights/tensor-reader.ts';

/** Small deterministic generator (tests must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

class MapSource implements TensorSource {
  private readonly t = new Map<string, { info: TensorInfo; data: Uint8Array }>();
  add(name: string, dtype: string, shape: number[], a: ArrayBufferView): this {
    const data = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    this.t.set(name, { info: { name, dtype, shape, start: 0, byteLength: data.byteLength, file: 'memory' }, data });
    return this;
  }
  has = (n: string) => this.t.has(n);
  info = (n: string) => this.t.get(n)!.info;
  bytes = (n: string) => this.t.get(n)!.data;
}

/** Values [R][C] of 4 bits → int32 words [R][⌈C/8⌉], column c at bits 4·(c mod 8). */
function packAlongRows(v: number[][]): Int32Array {
  const R = v.length;
  const C = v[0].length;
  const W = Math.ceil(C / 8);
  const out = new Int32Array(R * W);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * W + (c >> 3)] |= v[r][c] << (4 * (c & 7));
  return out;
}

const transpose = (v: number[][]) => v[0].map((_, c) => v.map((row) => row[c]));

function randInts(rnd: () => number, R: number, C: number, n: number): number[][] {
  return Array.from({ length: R }, () => Array.from({ length: C }, () => Math.floor(rnd() * n)));
}

function assertSame(got: Float32Array, want: (r: number, c: number) => number, R: number, C: number): void {
  let bad = 0;
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) if (got[r * C + c] !== Math.fround(want(r, c))) bad++;
  assert.equal(bad, 0, `${bad} values differ`);
}

const P = 'model.visual.blocks.0.mlp.linear_fc2';

for (const [R, C, g] of [
  [8, 4304, 128],
  [16, 45, 32],
  [8, 4304, 32],
] as const) {
  test(`compressed-tensors pack-quantized [${R}, ${C}] group ${g}: partial groups (and a partial last word when in % 8 ≠ 0)`, () => {
    const rnd = lcg(C + g);
    const nG = Math.ceil(C / g);
    const u = randInts(rnd, R, C, 16);
    const uz = randInts(rnd, R, nG, 16);
    const s = Float32Array.from({ length: R * nG }, () => rnd() * 0.1);
    const src = new MapSource()
      .add(`${P}.weight_packed`, 'I32', [R, Math.ceil(C / 8)], packAlongRows(u))
      .add(`${P}.weight_scale`, 'F32', [R, nG], s)
      .add(`${P}.weight_shape`, 'I64', [2], new BigInt64Array([BigInt(R), BigInt(C)]))
      .add(`${P}.weight_zero_point`, 'I32', [Math.ceil(R / 8), nG], transposeWords(packAlongRows(transpose(uz)), nG, Math.ceil(R / 8)));
    const qc = {
      quant_method: 'compressed-tensors',
      format: 'pack-quantized',
      config_groups: { g: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: g } } },
    };
    const w = readLinear(src, P, R, C, qc);
    assert.equal(w.format, 'q4');
    assertSame(dequantize(w), (r, c) => (u[r][c] - uz[r][Math.floor(c / g)]) * s[r * nG + Math.floor(c / g)], R, C);
  });
}

/** [A][B] words laid out row-major → [B][A]. */
function transposeWords(w: Int32Array, A: number, B: number): Int32Array {
  const out = new Int32Array(A * B);
  for (let a = 0; a < A; a++) for (let b = 0; b < B; b++) out[b * A + a] = w[a * B + b];
  return out;
}

test('GPTQ [16, 4304] group 128 (34 groups, the last one partial) and group_size −1', () => {
  const R = 16;
  const C = 4304;
  for (const gs of [128, -1]) {
    const g = gs === -1 ? C : gs;
    const nG = Math.ceil(C / g);
    const rnd = lcg(gs + 7);
    const q = randInts(rnd, C, R, 16); // [in][out]
    const z = randInts(rnd, nG, R, 15); // stored zero − 1 (v1)
    const s = Uint16Array.from({ length: nG * R }, () => 0x2000 + Math.floor(rnd() * 0x1000)); // f16 in [2^-7, 2^-6)
    const src = new MapSource()
      .add(`${P}.qweight`, 'I32', [C / 8, R], transposeWords(packAlongRows(transpose(q)), R, C / 8))
      .add(`${P}.qzeros`, 'I32', [nG, R / 8], packAlongRows(z))
      .add(`${P}.scales`, 'F16', [nG, R], s);
    const w = readLinear(src, P, R, C, { quant_method: 'gptq', bits: 4, group_size: gs, desc_act: false });
    assert.equal(w.format === 'q4' && w.nGroups, nG);
    const f16 = (h: number) => (1 + (h & 0x3ff) / 1024) * 2 ** (((h >> 10) & 31) - 15);
    assertSame(dequantize(w), (o, i) => (q[i][o] - (z[Math.floor(i / g)][o] + 1)) * f16(s[Math.floor(i / g) * R + o]), R, C);
  }
});

test('AWQ refuses 4304 input features with group 128 (its [in/g, out] scales have no partial group)', () => {
  const src = new MapSource()
    .add(`${P}.qweight`, 'I32', [4304, 1], new Int32Array(4304))
    .add(`${P}.qzeros`, 'I32', [34, 1], new Int32Array(34))
    .add(`${P}.scales`, 'F16', [34, 8], new Uint16Array(34 * 8));
  assert.throws(
    () => readLinear(src, P, 8, 4304, { quant_method: 'awq', bits: 4, group_size: 128, version: 'gemm' }),
    (e) => isQvlError(e, 'QUANT_INVALID') && e.message.includes('4304 is not a multiple of group_size 128') && e.message.includes(P),
  );
});

test('FP8 [40, 4304] in 128×128 blocks: a 1 × 34 scale grid with partial edge blocks', () => {
  const R = 40;
  const C = 4304;
  const rnd = lcg(3);
  const qs = Uint8Array.from({ length: R * C }, () => {
    const b = Math.floor(rnd() * 256);
    return (b & 0x7f) === 0x7f ? 0 : b; // no NaN encodings
  });
  const s = Float32Array.from({ length: 34 }, () => rnd());
  const src = new MapSource().add(`${P}.weight`, 'F8_E4M3', [R, C], qs).add(`${P}.weight_scale_inv`, 'F32', [1, 34], s);
  const w = readLinear(src, P, R, C, { quant_method: 'fp8', weight_block_size: [128, 128] });
  assertSame(dequantize(w), (r, c) => E4M3_TABLE[qs[r * C + c]] * s[Math.floor(c / 128)], R, C);
});
