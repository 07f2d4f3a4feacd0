import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SafetensorsFile } from '../weights/safetensors.ts';
import { readF32, readInts } from '../weights/tensor-reader.ts';

/**
 * One reference case of a fixture folder: `case_<name>.json` (messages, prompt texts, media
 * file names, scalars) and `case_<name>.safetensors` (tensors HF computed).
 */
export class FixtureCase {
  readonly name: string;
  readonly dir: string;
  readonly json: Record<string, any>;
  readonly tensors: SafetensorsFile | null;

  constructor(dir: string, name: string) {
    this.dir = dir;
    this.name = name;
    this.json = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));
    const st = path.join(dir, `${name}.safetensors`);
    this.tensors = fs.existsSync(st) ? SafetensorsFile.open(st) : null;
  }

  has(tensor: string): boolean {
    return this.tensors?.has(tensor) ?? false;
  }

  f32(tensor: string): Float32Array {
    return readF32(this.tensors!, tensor);
  }

  ints(tensor: string): number[] {
    return readInts(this.tensors!, tensor);
  }

  shape(tensor: string): number[] {
    return this.tensors!.info(tensor).shape;
  }

  /** Grids stored as [n, 3]. */
  grids(tensor: string): [number, number, number][] {
    const g = this.ints(tensor);
    const out: [number, number, number][] = [];
    for (let i = 0; i < g.length; i += 3) out.push([g[i], g[i + 1], g[i + 2]]);
    return out;
  }

  /** sha256 (hex) of a tensor's raw bytes. */
  sha256(tensor: string): string {
    return createHash('sha256').update(this.tensors!.bytes(tensor)).digest('hex');
  }

  /** A string field that the fixture stores JSON-encoded (e.g. expanded_prompt_text). */
  text(field: string): string | undefined {
    const v = this.json[field];
    if (typeof v !== 'string') return undefined;
    if (v.startsWith('"')) {
      try {
        return JSON.parse(v);
      } catch {
        return v;
      }
    }
    return v;
  }

  close(): void {
    this.tensors?.close();
  }
}

/** Names of every `case_*.json` in a folder, sorted. */
export function listCases(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^case_.*\.json$/.test(f))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}
