import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { isQvlError } from '../src/errors.ts';
import { E4M3_TABLE, f32ToBf16, f32ToF16 } from '../src/kernels/dtypes.ts';
import { SafetensorsCheckpoint, SafetensorsFile } from '../src/weights/safetensors.ts';
import { readF32, readInts, readMatrix } from '../src/weights/tensor-reader.ts';
import { buildSafetensors, bytesOf, tempDir } from './helpers/safetensors-bytes.ts';

const dir = tempDir();
const write = (name: string, buf: Buffer) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, buf);
  return p;
};
const expectError = (fn: () => unknown, code: string, ...mustMention: (string | RegExp)[]) => {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isQvlError(e), `expected a QvlError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const m of mustMention) assert.match(e.message, typeof m === 'string' ? new RegExp(m.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : m);
    return true;
  });
};

test('decodes every dtype it claims, against independently encoded values', () => {
  const vals = [0, 1, -2.5, 3.140625, 1e-3, -65504, 0.1];
  const f32 = Float32Array.from(vals);
  const bf16 = Uint16Array.from(vals, (v) => f32ToBf16(v));
  const f16 = Uint16Array.from(vals, (v) => f32ToF16(v));
  const fp8 = Uint8Array.from([0x00, 0x38, 0xc4, 0x7e, 0x01, 0x80 | 0x40]); // 0, 1, -3, 448, 2^-9, -2
  const p = write(
    'dtypes.safetensors',
    buildSafetensors({
      f32: { dtype: 'F32', shape: [7], data: bytesOf(f32) },
      bf16: { dtype: 'BF16', shape: [7], data: bytesOf(bf16) },
      f16: { dtype: 'F16', shape: [7], data: bytesOf(f16) },
      i64: { dtype: 'I64', shape: [3], data: bytesOf(BigInt64Array.from([5n, -7n, 1n << 40n])) },
      i32: { dtype: 'I32', shape: [2], data: bytesOf(Int32Array.from([-3, 2147483647])) },
      u8: { dtype: 'U8', shape: [2], data: Uint8Array.from([0, 255]) },
      fp8: { dtype: 'F8_E4M3', shape: [6], data: fp8 },
    }),
  );
  const f = SafetensorsFile.open(p);
  assert.deepEqual([...readF32(f, 'f32')], [...f32]);
  // bf16 keeps 8 mantissa bits: the decoded value is the nearest bf16, within 2^-8 relative
  readF32(f, 'bf16').forEach((v, i) => assert.ok(Math.abs(v - vals[i]) <= Math.abs(vals[i]) / 256 + 1e-40, `bf16 ${i}`));
  readF32(f, 'f16').forEach((v, i) => assert.ok(Math.abs(v - vals[i]) <= Math.abs(vals[i]) / 2048 + 6e-8, `f16 ${i}`));
  assert.deepEqual(readInts(f, 'i64'), [5, -7, 2 ** 40]);
  assert.deepEqual(readInts(f, 'i32'), [-3, 2147483647]);
  assert.deepEqual(readInts(f, 'u8'), [0, 255]);
  assert.deepEqual([...readF32(f, 'fp8')], [0, 1, -3, 448, 2 ** -9, -2]);
  assert.ok(Number.isNaN(E4M3_TABLE[0x7f]) && Number.isNaN(E4M3_TABLE[0xff]), 'S.1111.111 is NaN');
  const m = readMatrix(f, 'bf16', 7, 1); // a vector read as a [7, 1] matrix keeps its 16-bit storage
  assert.equal(m.format, 'bf16');
  f.close();
});

test('truncated file: the header length runs past the end', () => {
  const good = buildSafetensors({ w: { dtype: 'F32', shape: [4], data: new Uint8Array(16) } });
  const p = write('trunc-header.safetensors', good.subarray(0, 20));
  expectError(() => SafetensorsFile.open(p), 'SAFETENSORS_INVALID', p, 'truncated');
});

test('truncated file: a tensor runs past the end of the data', () => {
  const good = buildSafetensors({ w: { dtype: 'F32', shape: [4], data: new Uint8Array(16) } });
  const p = write('trunc-data.safetensors', good.subarray(0, good.length - 4));
  expectError(() => SafetensorsFile.open(p), 'SAFETENSORS_INVALID', p, 'tensor w', 'past the end');
});

test('header offsets past the end of the file', () => {
  const p = write('offsets.safetensors', buildSafetensors({ w: { dtype: 'F32', shape: [4], data: new Uint8Array(16), offsets: [1000, 1016] } }));
  expectError(() => SafetensorsFile.open(p), 'SAFETENSORS_INVALID', 'tensor w', '[1000, 1016]');
});

test('shape × dtype disagrees with the byte span', () => {
  const p = write('span.safetensors', buildSafetensors({ w: { dtype: 'BF16', shape: [3, 4], data: new Uint8Array(16) } }));
  expectError(() => SafetensorsFile.open(p), 'SAFETENSORS_INVALID', 'tensor w', 'needs 24 bytes', 'span 16');
});

test('unknown dtype is named', () => {
  const p = write('dtype.safetensors', buildSafetensors({ w: { dtype: 'F4_E2M1', shape: [2], data: new Uint8Array(1) } }));
  expectError(() => SafetensorsFile.open(p), 'DTYPE_UNSUPPORTED', 'tensor w', 'F4_E2M1', p);
});

test('overlapping tensors, bad JSON, absurd header length', () => {
  const p1 = write(
    'overlap.safetensors',
    buildSafetensors({ a: { dtype: 'F32', shape: [2], data: new Uint8Array(8), offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data: new Uint8Array(8), offsets: [4, 12] } }),
  );
  expectError(() => SafetensorsFile.open(p1), 'SAFETENSORS_INVALID', 'overlap');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(5n);
  const p2 = write('json.safetensors', Buffer.concat([len, Buffer.from('{oops')]));
  expectError(() => SafetensorsFile.open(p2), 'SAFETENSORS_INVALID', 'not valid JSON');
  const p3 = write('huge.safetensors', buildSafetensors({ w: { dtype: 'F32', shape: [1], data: new Uint8Array(4) } }, { headerLenOverride: 2 ** 40 }));
  expectError(() => SafetensorsFile.open(p3), 'SAFETENSORS_INVALID', 'header length');
});

test('wrong shape for a model tensor names tensor and file', () => {
  const p = write('shape.safetensors', buildSafetensors({ 'layer.weight': { dtype: 'F32', shape: [2, 3], data: new Uint8Array(24) } }));
  const f = SafetensorsFile.open(p);
  expectError(() => readMatrix(f, 'layer.weight', 3, 2), 'TENSOR_SHAPE', 'layer.weight', '[2, 3]', '[3, 2]', p);
  expectError(() => f.bytes('nope'), 'TENSOR_MISSING', 'nope');
  f.close();
});

test('sharded checkpoint through model.safetensors.index.json', () => {
  const d = tempDir('qvl-shards-');
  fs.writeFileSync(path.join(d, 'model-00001-of-00002.safetensors'), buildSafetensors({ a: { dtype: 'F32', shape: [1], data: bytesOf(Float32Array.of(1.5)) } }));
  fs.writeFileSync(path.join(d, 'model-00002-of-00002.safetensors'), buildSafetensors({ b: { dtype: 'F32', shape: [1], data: bytesOf(Float32Array.of(-2)) } }));
  const index = { metadata: { total_size: 8 }, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } };
  fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify(index));
  const ck = SafetensorsCheckpoint.open(d);
  assert.deepEqual(ck.names().sort(), ['a', 'b']);
  assert.equal(readF32(ck, 'b')[0], -2);
  ck.close();
  // an index that points at a tensor its shard lacks
  fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, c: 'model-00002-of-00002.safetensors' } }));
  expectError(() => SafetensorsCheckpoint.open(d), 'TENSOR_MISSING', 'c', 'model-00002-of-00002.safetensors');
  // a missing shard
  fs.rmSync(path.join(d, 'model-00002-of-00002.safetensors'));
  expectError(() => SafetensorsCheckpoint.open(d), 'FILE_NOT_FOUND', 'model-00002-of-00002.safetensors');
});

test('a folder without weights', () => {
  expectError(() => SafetensorsCheckpoint.open(tempDir('qvl-empty-')), 'FILE_NOT_FOUND', 'no model.safetensors');
});
