import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import type { WeightData } from '../kernels/weight.ts';
import { parseConfig } from '../model/config.ts';
import { canonicalView } from '../weights/names.ts';
import { QVL_FORMAT_VERSION, QVL_SUFFIX } from '../weights/quant/qvl-format.ts';
import { checkQuantOptions, quantTarget, quantizeForPlan, type QuantPlanOptions } from '../weights/quant-plan.ts';
import { SafetensorsCheckpoint } from '../weights/safetensors.ts';
import { PAD_TENSOR_PREFIX, tensorBytes, writeSafetensorsShards, type TensorToWrite } from '../weights/safetensors-writer.ts';
import { readMatrix } from '../weights/tensor-reader.ts';

export interface QuantizeCheckpointOptions extends QuantPlanOptions {
  /** replace the contents of a non-empty output folder */
  overwrite?: boolean;
  /**
   * q4 matrices quantized from calibration data (`calibrateQ4`), written in place of the
   * round-to-nearest ones of the same names; `info` is recorded in config.json
   */
  calibrated?: { weights: ReadonlyMap<string, WeightData>; info: Record<string, unknown> };
  maxShardBytes?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface QuantizeSummary {
  tensors: number;
  quantized: number;
  inputBytes: number;
  outputBytes: number;
  files: string[];
}

const FLOAT_DTYPES = new Set(['F32', 'BF16', 'F16']);
const QUANTIZED_SUFFIXES = ['.qweight', '.weight_packed', '.weight_scale_inv', `.${QVL_SUFFIX.q8.qs}`, `.${QVL_SUFFIX.q4.qs}`];

/**
 * What `quantizeCheckpoint` checks before it reads a tensor (run it before a long calibration):
 * the options, the input folder (a float checkpoint) and the output folder; returns the parsed config.
 */
export function checkQuantizeCheckpoint(inDir: string, outDir: string, opts: QuantizeCheckpointOptions): { raw: Record<string, unknown>; cfg: ReturnType<typeof parseConfig> } {
  checkQuantOptions(opts);
  if (opts.calibrated && (opts.mode !== 'q4' || opts.symmetric)) {
    throw new QvlError('OPTION_INVALID', 'calibration makes asymmetric q4 matrices: use it with --quant q4 and without --symmetric', { mode: opts.mode, symmetric: opts.symmetric ?? false });
  }
  if (!fs.existsSync(inDir) || !fs.statSync(inDir).isDirectory()) {
    throw new QvlError('FILE_NOT_FOUND', `model folder ${inDir} does not exist`, { dir: inDir });
  }
  if (path.resolve(inDir) === path.resolve(outDir)) {
    throw new QvlError('OPTION_INVALID', `the output folder must differ from the input folder (${inDir})`, { dir: outDir });
  }
  if (fs.existsSync(outDir) && fs.readdirSync(outDir).length > 0 && !opts.overwrite) {
    throw new QvlError('OPTION_INVALID', `output folder ${outDir} exists and is not empty (overwrite it with --force)`, { dir: outDir });
  }
  const cfgPath = path.join(inDir, 'config.json');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `cannot read ${cfgPath}: ${(e as Error).message}`, { file: cfgPath });
  }
  const cfg = parseConfig(raw);
  const existing = raw.quantization_config as Record<string, unknown> | undefined;
  if (existing) {
    throw new QvlError('QUANT_INVALID', `${inDir} is already quantized (quant_method ${JSON.stringify(existing.quant_method)}); qvl quantize needs a BF16/F16/F32 checkpoint`, {
      dir: inDir,
      quantMethod: existing.quant_method,
    });
  }
  return { raw, cfg };
}

/**
 * Writes a quantized copy of a float checkpoint folder in qvl's own layout (see
 * weights/quant/qvl-format.ts): the matrices the plan names become q8/q4 tensors, every other
 * tensor is copied byte for byte under its canonical name, config.json gains a
 * `quantization_config` with `quant_method: "qvl"`, and the remaining files (tokenizer,
 * templates, processor and generation configs) are copied. Tensors are read, quantized and
 * written one module at a time.
 */
export function quantizeCheckpoint(inDir: string, outDir: string, opts: QuantizeCheckpointOptions): QuantizeSummary {
  const { raw, cfg } = checkQuantizeCheckpoint(inDir, outDir, opts);
  const ck = SafetensorsCheckpoint.open(inDir);
  try {
    const src = canonicalView(ck);
    const names = src.names().filter((n) => !n.startsWith(PAD_TENSOR_PREFIX));
    const already = names.find((n) => QUANTIZED_SUFFIXES.some((s) => n.endsWith(s)));
    if (already) {
      throw new QvlError('QUANT_INVALID', `${inDir} holds quantized tensors (${already}); qvl quantize needs a BF16/F16/F32 checkpoint`, { tensor: already });
    }
    const out: TensorToWrite[] = [];
    let quantized = 0;
    let inputBytes = 0;
    let done = 0;
    const tick = () => opts.onProgress?.(++done, out.length);
    let memo: { prefix: string; w: WeightData } | undefined;
    const calibratedFor = (prefix: string, rows: number, cols: number): WeightData | undefined => {
      const w = opts.calibrated?.weights.get(prefix);
      if (w && (w.format !== 'q4' || w.rows !== rows || w.cols !== cols || w.groupSize !== (opts.groupSize ?? 32) || !w.zeros)) {
        throw new QvlError('OPTION_INVALID', `the calibrated ${prefix} is not an asymmetric q4 [${rows}, ${cols}] matrix of group ${opts.groupSize ?? 32}`, { module: prefix });
      }
      return w;
    };
    for (const name of names) {
      const info = src.info(name);
      inputBytes += info.byteLength;
      // A tied checkpoint's redundant lm_head.weight is never read (the tie wins): drop it.
      if (name === 'lm_head.weight' && cfg.text.tieWordEmbeddings) continue;
      const prefix = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : '';
      const target = prefix ? quantTarget(prefix, opts.mode, opts.head) : undefined;
      if (!target || info.shape.length !== 2 || !FLOAT_DTYPES.has(info.dtype)) {
        out.push({ name, dtype: info.dtype, shape: info.shape, data: () => (tick(), src.bytes(name)) });
        continue;
      }
      quantized++;
      const [rows, cols] = info.shape;
      const get = (): WeightData => {
        if (memo?.prefix !== prefix) memo = { prefix, w: calibratedFor(prefix, rows, cols) ?? quantizeForPlan(readMatrix(src, name, rows, cols), prefix, opts) };
        return memo.w;
      };
      const part = (suffix: string, dtype: string, shape: number[], pick: (w: WeightData) => ArrayBufferView | undefined): TensorToWrite => ({
        name: `${prefix}.${suffix}`,
        dtype,
        shape,
        data: () => {
          tick();
          const a = pick(get());
          if (!a) throw new QvlError('INTERNAL', `quantizing ${prefix} did not produce ${suffix}`, { module: prefix });
          return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
        },
      });
      if (target === 'q8') {
        const nb = Math.ceil(cols / 32);
        out.push(part(QVL_SUFFIX.q8.qs, 'I8', [rows, cols], (w) => (w.format === 'q8' ? w.qs : undefined)));
        out.push(part(QVL_SUFFIX.q8.scales, 'F32', [rows, nb], (w) => (w.format === 'q8' ? w.scales : undefined)));
      } else {
        const nG = Math.ceil(cols / (opts.groupSize ?? 32));
        out.push(part(QVL_SUFFIX.q4.qs, 'U8', [rows, Math.ceil(cols / 2)], (w) => (w.format === 'q4' ? w.qs : undefined)));
        out.push(part(QVL_SUFFIX.q4.scales, 'F32', [rows, nG], (w) => (w.format === 'q4' ? w.scales : undefined)));
        if (!opts.symmetric) out.push(part(QVL_SUFFIX.q4.zeros, 'U8', [rows, nG], (w) => (w.format === 'q4' ? w.zeros : undefined)));
      }
    }

    fs.mkdirSync(outDir, { recursive: true });
    for (const f of fs.readdirSync(outDir)) {
      if (f.endsWith('.safetensors') || f === 'model.safetensors.index.json') fs.rmSync(path.join(outDir, f));
    }
    const files = writeSafetensorsShards(outDir, out, {
      metadata: { format: 'pt', qvl_format_version: String(QVL_FORMAT_VERSION), qvl_quant: opts.mode },
      maxShardBytes: opts.maxShardBytes,
    });
    const qc: Record<string, unknown> = { quant_method: 'qvl', format_version: QVL_FORMAT_VERSION, mode: opts.mode };
    if (opts.mode === 'q4') Object.assign(qc, { group_size: opts.groupSize ?? 32, symmetric: opts.symmetric ?? false });
    if (opts.head) qc.head = opts.head;
    if (opts.calibrated) qc.calibration = opts.calibrated.info;
    fs.writeFileSync(path.join(outDir, 'config.json'), JSON.stringify({ ...raw, quantization_config: qc }, null, 2) + '\n');
    files.push('config.json');
    for (const f of fs.readdirSync(inDir)) {
      const p = path.join(inDir, f);
      if (f === 'config.json' || f.endsWith('.safetensors') || f === 'model.safetensors.index.json' || f.endsWith('.partial')) continue;
      if (!fs.statSync(p).isFile()) continue;
      fs.copyFileSync(p, path.join(outDir, f));
      files.push(f);
    }
    const outputBytes = out.reduce((a, t) => a + tensorBytes(t), 0);
    return { tensors: out.length, quantized, inputBytes, outputBytes, files };
  } finally {
    ck.close();
  }
}
