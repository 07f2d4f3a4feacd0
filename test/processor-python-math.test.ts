import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numpyLinspace, pyFormat1f, pyFormatFixed, roundHalfEven } from '../src/processor/python-math.ts';
import { readProcessorCases } from './helpers/processor-fixtures.ts';

test('roundHalfEven rounds ties to the even neighbour, like Python round()', () => {
  // 22.5 is 720/32 (spec trap 1); 8.5 and 10.5 come from 272/32 and 336/32.
  const cases: [number, number][] = [
    [22.5, 22], [8.5, 8], [10.5, 10], [2.5, 2], [3.5, 4], [0.5, 0], [1.5, 2], [-0.5, 0], [-1.5, -2], [-2.5, -2],
    [2.4999999999999996, 2], [2.5000000000000004, 3], [7, 7], [-7.2, -7], [1e16 + 2, 1e16 + 2],
  ];
  for (const [x, want] of cases) assert.equal(roundHalfEven(x), want, `round(${x})`);
});

test('pyFormat1f matches Python "{:.1f}" on the exact binary value (HF reference values)', () => {
  const cases = readProcessorCases().format_1f as { value: number; text: string }[];
  assert.ok(cases.length > 200);
  for (const { value, text } of cases) assert.equal(pyFormat1f(value), text, `${value}`);
});

test('pyFormat1f: the ties JavaScript toFixed gets wrong', () => {
  assert.equal(pyFormat1f(0.25), '0.2');
  assert.equal((0.25).toFixed(1), '0.3'); // the trap this function exists for
  assert.equal(pyFormat1f(1.25), '1.2');
  assert.equal(pyFormat1f(0.75), '0.8');
  assert.equal(pyFormat1f(0.35), '0.3'); // 0.35 is stored below the tie
  assert.equal(pyFormat1f(-0.0), '-0.0');
  assert.equal(pyFormat1f(Number.NaN), 'nan');
  assert.equal(pyFormat1f(Infinity), 'inf');
  assert.equal(pyFormatFixed(2.5, 0), '2');
  assert.equal(pyFormatFixed(1e22, 1), '10000000000000000000000.0');
  assert.equal(pyFormatFixed(5e-324, 3), '0.000');
});

test('numpyLinspace reproduces numpy.linspace endpoints and steps', () => {
  assert.deepEqual(numpyLinspace(0, 7, 4), [0, 7 / 3, 2 * (7 / 3), 7]);
  assert.deepEqual(numpyLinspace(0, 9, 1), [0]);
  assert.deepEqual(numpyLinspace(0, 0, 3), [0, 0, 0]);
  assert.deepEqual(numpyLinspace(0, 5, 0), []);
  const v = numpyLinspace(0, 299, 20);
  assert.equal(v[19], 299);
  assert.equal(v[1], 299 / 19);
});
