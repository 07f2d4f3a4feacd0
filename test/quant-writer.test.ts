import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { SafetensorsCheckpoint, SafetensorsFile } from '../src/weights/safetensors.ts';
import { PAD_TENSOR_PREFIX, writeSafetensors, writeSafetensorsShards, type TensorToWrite } from '../src/weights/safetensors-writer.ts';
import { tempDir } from './helpers/safetensors-bytes.ts';

function tensors(log: string[] = []): TensorToWrite[] {
  const make = (name: string, dtype: string, shape: number[], n: number, el: number): TensorToWrite => ({
    name,
    dtype,
    shape,
    data: () => {
      log.push(name);
      return Uint8Array.from({ length: n * el }, (_, i) => (i * 7 + name.length) & 255);
    },
  });
  return [
    make('a.u8', 'U8', [3], 3, 1),
    make('b.f32', 'F32', [5, 3], 15, 4),
    make('c.bf16', 'BF16', [7], 7, 2),
    make('d.i8', 'I8', [2, 65], 130, 1),
    make('e.i64', 'I64', [1], 1, 8),
  ];
}

/** The header as written: every span, in file order. */
function spans(file: string): { name: string; start: number; end: number }[] {
  const b = fs.readFileSync(file);
  const len = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + len).toString('utf8'));
  return Object.entries(h)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, v]) => ({ name, start: 8 + len + (v as { data_offsets: number[] }).data_offsets[0], end: 8 + len + (v as { data_offsets: number[] }).data_offsets[1] }))
    .sort((x, y) => x.start - y.start);
}

test('every tensor starts 64-byte aligned, the data has no holes, and values and metadata round-trip', () => {
  const dir = tempDir();
  const file = path.join(dir, 'x.safetensors');
  const log: string[] = [];
  const ts = tensors(log);
  const size = writeSafetensors(file, ts, { metadata: { format: 'pt', note: 'test' } });
  assert.equal(fs.statSync(file).size, size);
  assert.deepEqual(log, ts.map((t) => t.name), 'each producer is called once, in order');
  const s = spans(file);
  // what the Python safetensors library requires: spans cover the data section contiguously
  for (let i = 1; i < s.length; i++) assert.equal(s[i].start, s[i - 1].end, `${s[i].name} follows ${s[i - 1].name}`);
  assert.equal(s[s.length - 1].end, size);
  const f = SafetensorsFile.open(file);
  assert.deepEqual(f.metadata, { format: 'pt', note: 'test' });
  for (const t of ts) {
    const info = f.info(t.name);
    assert.equal(info.start % 64, 0, `${t.name} starts at ${info.start}`);
    assert.deepEqual(info.shape, t.shape);
    assert.equal(info.dtype, t.dtype);
    assert.deepEqual(f.bytes(t.name), t.data());
  }
  const pads = [...f.tensors.keys()].filter((n) => n.startsWith(PAD_TENSOR_PREFIX));
  assert.ok(pads.length > 0 && pads.every((p) => f.info(p).dtype === 'U8'));
  f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('sharded output: an index, unique pad names across shards, and the checkpoint reader opens it', () => {
  const dir = tempDir();
  const ts = tensors();
  const files = writeSafetensorsShards(dir, ts, { maxShardBytes: 100 });
  assert.ok(files.length >= 3, `several shards: ${files.join(', ')}`);
  assert.ok(files.includes('model.safetensors.index.json'));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual(Object.keys(index.weight_map).sort(), ts.map((t) => t.name).sort());
  assert.equal(index.metadata.total_size, 3 + 60 + 14 + 130 + 8);
  const ck = SafetensorsCheckpoint.open(dir);
  for (const t of ts) assert.deepEqual(ck.bytes(t.name), t.data());
  ck.close();
  // one shard when everything fits
  const one = tempDir();
  assert.deepEqual(writeSafetensorsShards(one, ts), ['model.safetensors']);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(one, { recursive: true, force: true });
});

test('a producer that returns the wrong number of bytes fails and leaves no file behind', () => {
  const dir = tempDir();
  const file = path.join(dir, 'x.safetensors');
  const bad: TensorToWrite[] = [...tensors(), { name: 'z', dtype: 'F32', shape: [4], data: () => new Uint8Array(12) }];
  assert.throws(() => writeSafetensors(file, bad), (e) => isQvlError(e, 'INTERNAL') && e.message.includes('tensor z: 12 bytes produced') && e.message.includes('needs 16'));
  assert.deepEqual(fs.readdirSync(dir), []);
  assert.throws(
    () => writeSafetensors(file, [...tensors(), tensors()[0]]),
    (e) => isQvlError(e, 'INTERNAL') && e.message.includes('a.u8 is written twice'),
  );
  assert.throws(() => writeSafetensors(file, [{ name: 'q', dtype: 'F4', shape: [2], data: () => new Uint8Array(1) }]), (e) => isQvlError(e, 'DTYPE_UNSUPPORTED'));
  fs.rmSync(dir, { recursive: true, force: true });
});
