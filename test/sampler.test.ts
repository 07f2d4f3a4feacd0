import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isQvlError } from '../src/errors.ts';
import { argmax } from '../src/kernels/ts/argmax.ts';
import { draw, drawSorted, topIndices } from '../src/generate/draw.ts';
import { Sampler } from '../src/generate/sampler.ts';
import { StopStringFilter } from '../src/generate/stop-strings.ts';
import { rng } from './helpers/rng.ts';

const logitsFromProbs = (p: number[]) => Float32Array.from(p, Math.log);

function histogram(opts: ConstructorParameters<typeof Sampler>[0], logits: Float32Array, draws: number): number[] {
  const s = new Sampler(opts);
  const h = new Array(logits.length).fill(0);
  for (let i = 0; i < draws; i++) h[s.pick(logits.slice())]++;
  return h;
}

test('greedy picks the argmax; top-k 1 is greedy at any temperature', () => {
  const l = Float32Array.from([0.1, 2, -1, 1.9]);
  assert.equal(new Sampler({ temperature: 0 }).pick(l.slice()), 1);
  assert.equal(new Sampler({ doSample: false, temperature: 5 }).pick(l.slice()), 1);
  for (let seed = 0; seed < 20; seed++) assert.equal(new Sampler({ temperature: 3, topK: 1, seed }).pick(l.slice()), 1);
});

test('the same seed gives the same draws; sampling follows the softmax', () => {
  const l = logitsFromProbs([0.5, 0.3, 0.2]);
  const a = new Sampler({ temperature: 1, seed: 42 });
  const b = new Sampler({ temperature: 1, seed: 42 });
  const da = Array.from({ length: 50 }, () => a.pick(l.slice()));
  const db = Array.from({ length: 50 }, () => b.pick(l.slice()));
  assert.deepEqual(da, db);
  const h = histogram({ temperature: 1, seed: 7 }, l, 20000);
  [0.5, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(h[i] / 20000 - p) < 0.015, `token ${i}: ${h[i] / 20000} vs ${p}`));
});

test('temperature sharpens: T = 0.5 squares the probabilities (renormalized)', () => {
  const h = histogram({ temperature: 0.5, seed: 3 }, logitsFromProbs([0.6, 0.4]), 20000);
  const expect = 0.36 / (0.36 + 0.16);
  assert.ok(Math.abs(h[0] / 20000 - expect) < 0.015, `${h[0] / 20000} vs ${expect}`);
});

test('top-p keeps the smallest set reaching the mass; min-p cuts relative to the top token', () => {
  const l = logitsFromProbs([0.5, 0.3, 0.15, 0.05]);
  const hp = histogram({ temperature: 1, topP: 0.7, seed: 1 }, l, 8000);
  assert.equal(hp[2] + hp[3], 0, 'tokens past 0.8 cumulative mass never drawn');
  assert.ok(Math.abs(hp[0] / 8000 - 0.5 / 0.8) < 0.02);
  const hm = histogram({ temperature: 1, minP: 0.35, seed: 1 }, l, 8000);
  assert.equal(hm[2] + hm[3], 0, 'tokens below 0.35 × 0.5 never drawn');
  const hk = histogram({ temperature: 1, topK: 2, seed: 2 }, l, 8000);
  assert.equal(hk[2] + hk[3], 0);
});

test('repetition penalty (HF: prompt and output), presence and frequency penalties (output only)', () => {
  const s = new Sampler({ repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, temperature: 0 }, [0, 1]);
  s.accept(2);
  s.accept(2);
  const l = Float32Array.from([4, -4, 1, 1]);
  s.penalize(l);
  assert.deepEqual([...l], [2, -8, 1 / 2 - 0.5 - 0.5, 1]);
});

test('options outside their range are refused by name', () => {
  for (const [o, name] of [[{ topP: 0 }, 'top_p'], [{ temperature: -1 }, 'temperature'], [{ topK: 1.5 }, 'top_k'], [{ minP: 2 }, 'min_p'], [{ presencePenalty: 3 }, 'presence_penalty']] as const) {
    assert.throws(() => new Sampler(o), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && e.message.startsWith(name));
  }
});

test('topIndices agrees with a full sort', () => {
  const x = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 12.9898) * 43758.5453 % 1);
  const full = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  for (const k of [1, 5, 20, 300]) assert.deepEqual(topIndices(x, k), full.slice(0, k));
  assert.equal(argmax(x), full[0]);
});

test('stop strings: held back while undecided, never emitted, earliest wins', () => {
  const f = new StopStringFilter(['STOP', '\n\nUser:']);
  let out = '';
  for (const piece of ['Hello S', 'T', 'ill ', 'going ST', 'OP and more']) out += f.push(piece);
  assert.equal(out, 'Hello STill going ');
  assert.ok(f.stopped);
  assert.equal(f.flush(), '');
  const g = new StopStringFilter(['abc']);
  assert.equal(g.push('xxab'), 'xx');
  assert.equal(g.push('d'), 'abd');
  assert.equal(g.flush(), '');
  const h = new StopStringFilter(['zz']);
  assert.equal(h.push('tail z') + h.flush(), 'tail z', 'held-back text comes out at the end');
});

test('argmax: the first index of the largest value, NaN never chosen, 0 when nothing else is', () => {
  // the definition, spelled out: the values that are not NaN, their largest, its first index
  const naive = (x: Float32Array) => {
    let best = -1;
    for (let i = 0; i < x.length; i++) if (!Number.isNaN(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best < 0 ? 0 : best;
  };
  const values = fc.oneof(fc.float({ noDefaultInfinity: false }), fc.constantFrom(Number.NaN, -Infinity, Infinity, 0, -0, 1));
  fc.assert(fc.property(fc.array(values, { maxLength: 40 }), (xs) => argmax(Float32Array.from(xs)) === naive(Float32Array.from(xs))), { numRuns: 2000 });
  assert.equal(argmax(Float32Array.of(Number.NaN, -Infinity, Number.NaN)), 1);
  assert.equal(argmax(Float32Array.of(Number.NaN, Number.NaN)), 0);
  assert.equal(argmax(new Float32Array(0)), 0);
});

test('a sampler given kernels picks greedily with their argmax', () => {
  const calls: number[] = [];
  const kernels = { argmax: (x: Float32Array) => (calls.push(x.length), 2) };
  assert.equal(new Sampler({ temperature: 0 }, [], kernels).pick(Float32Array.of(5, 1, 0)), 2);
  assert.deepEqual(calls, [3]);
});

test('draw picks what the full sort picks, for every cut and kind of row', () => {
  const r = rng(5);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const rows: Array<[string, Float32Array]> = [];
  for (const V of [1, 7, 5000, 151_936]) {
    rows.push([`${V} flat`, Float32Array.from({ length: V }, () => gauss())]);
    rows.push([`${V} wide`, Float32Array.from({ length: V }, () => 4 * gauss())]);
    // a trained model's shape: a few tokens far above a broad bulk
    const peaked = Float32Array.from({ length: V }, () => 2 * gauss());
    for (let i = 0; i < Math.min(V, 6); i++) peaked[Math.floor(r() * V)] = 18 + 3 * gauss();
    rows.push([`${V} peaked`, peaked]);
    const ties = Float32Array.from({ length: V }, () => Math.round(2 * gauss()));
    for (let i = 0; i < V; i += 3) ties[i] = -Infinity;
    rows.push([`${V} ties and −∞`, ties]);
  }
  let checked = 0;
  for (const [name, x] of rows) {
    const large = x.length > 10_000;
    for (const temperature of large ? [0.7] : [0.3, 0.7, 1.5]) {
      for (const topK of large ? [0, 20] : [0, 1, 20, 300]) {
        for (const [topP, minP] of [[1, 0], [0.8, 0], [0.95, 0.05], [1, 0.05]]) {
          const o = { temperature, topK, topP, minP };
          for (const u of large ? [0, 0.5, 0.9999] : [0, 0.25, 0.5, 0.9, 0.999999, r(), r()]) {
            assert.equal(draw(x, o, u, argmax), drawSorted(x, o, u), `${name} ${JSON.stringify(o)} u=${u}`);
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 500);
});
