import fs from 'node:fs';
import path from 'node:path';
import { Qwen3VL } from '../api/qwen3vl.ts';
import type { Backend } from '../kernels/backend.ts';
import type { KvType } from '../kernels/kv.ts';
import type { BackendName } from '../kernels/select.ts';
import { loadImage, type RgbImage } from '../media/index.ts';
import type { ModelInputs } from '../model/qwen3vl.ts';
import type { Grid } from '../model/rope-index.ts';
import { argmax } from '../kernels/ts/argmax.ts';
import { expandPrompt, preprocessImage, preprocessVideo, resizeRgbBicubic, type VideoPromptLayout } from '../processor/index.ts';
import { check, maxAbsDiff, mismatches, textDiff, type StageCheck } from './compare.ts';
import { FixtureCase, listCases } from './fixture-case.ts';
import { concatF32 } from '../util/concat.ts';

export interface ParityOptions {
  backend?: BackendName | Backend;
  threads?: number;
  /** only cases whose name contains one of these */
  only?: string[];
  onCheck?: (c: StageCheck) => void;
  /** KV cache type (default 'f32', as HF computes: the tolerances below are for float32) */
  kvType?: KvType;
}

export const TOLERANCE = {
  exact: 0,
  vision: 1e-4,
  hidden: 1e-4,
  logits: 1e-3,
};

/** Fixture tensor name → our trace stage, per kind of media. */
const VISION_STAGES: Record<string, string> = {
  patch_embed: 'patch_embed',
  pos_embed_interp: 'pos_embed',
  vision_last_hidden: 'last_hidden',
  embeds: 'embeds',
};

/**
 * Checks a model folder against reference tensors computed by HF transformers, stage by stage:
 * chat-template renders, preprocessing, prompt expansion, ids, positions, every vision and
 * decoder stage, logits, KV-cache decode steps and greedy tokens.
 */
export async function runParity(dir: string, opts: ParityOptions = {}): Promise<StageCheck[]> {
  const results: StageCheck[] = [];
  const emit = (c: StageCheck) => {
    results.push(c);
    opts.onCheck?.(c);
  };
  const model = await Qwen3VL.fromPretrained(dir, { backend: opts.backend ?? 'auto', threads: opts.threads, kvType: opts.kvType ?? 'f32' });
  checkRenders(model, dir, emit);
  // Every case is opened: a filtered case may borrow media from a sibling.
  const cases = listCases(dir).map((n) => new FixtureCase(dir, n));
  const selected = cases.filter((c) => !opts.only || opts.only.some((o) => c.name.includes(o)));
  try {
    for (const c of selected) await checkCase(model, c, cases, emit);
  } finally {
    for (const c of cases) c.close();
  }
  return results;
}

function checkRenders(model: Qwen3VL, dir: string, emit: (c: StageCheck) => void): void {
  const file = path.join(dir, 'chat_template_renders.json');
  if (!fs.existsSync(file)) return;
  const data = JSON.parse(fs.readFileSync(file, 'utf8')) as { cases?: any[] };
  for (const r of data.cases ?? []) {
    const { add_generation_prompt, tools, add_vision_id, ...extra } = r.kwargs ?? {};
    const label = `render:${r.name}${add_generation_prompt ? '+gen' : ''}`;
    let ours: string;
    try {
      ours = model.template.render(r.messages, { addGenerationPrompt: Boolean(add_generation_prompt), tools, addVisionId: add_vision_id, extra });
    } catch (e) {
      emit(check('chat_template_renders', label, 1, 0, (e as Error).message));
      continue;
    }
    emit(check('chat_template_renders', label, ours === r.rendered ? 0 : 1, 0, textDiff(ours, r.rendered)));
    if (Array.isArray(r.token_ids)) {
      emit(check('chat_template_renders', `${label}:ids`, mismatches(model.tokenizer.encode(r.rendered), r.token_ids), 0));
    }
  }
}

async function checkCase(model: Qwen3VL, c: FixtureCase, all: FixtureCase[], emit: (c: StageCheck) => void): Promise<void> {
  const j = c.json;
  const ok = (stage: string, diff: number, tol: number, detail?: string) => emit(check(c.name, stage, diff, tol, detail));
  const merge = model.model.cfg.vision.spatialMergeSize;

  // Chat template
  if (Array.isArray(j.messages) && typeof j.prompt_text === 'string') {
    const ours = model.template.render(j.messages, { addGenerationPrompt: true });
    ok('render', ours === j.prompt_text ? 0 : 1, 0, textDiff(ours, j.prompt_text));
  }

  // Preprocessing, from the case's own media files
  let imageGrids: Grid[] | undefined = c.has('image_grid_thw') ? c.grids('image_grid_thw') : undefined;
  let videoGrids: Grid[] | undefined = c.has('video_grid_thw') ? c.grids('video_grid_thw') : undefined;
  let timestamps: number[][] | undefined = Array.isArray(j.timestamps_seconds) ? [j.timestamps_seconds] : undefined;
  const imageFiles: string[] = j.image_files ?? (j.image_file ? [j.image_file] : []);
  if (imageFiles.length) {
    const pixels: Float32Array[] = [];
    const grids: Grid[] = [];
    for (const [k, f] of imageFiles.entries()) {
      const img = await loadImage(path.join(c.dir, f));
      const p = preprocessImage(img, model.processor.image);
      const refResized = `image${k}_resized_uint8_torchvision`;
      if (c.has(refResized)) {
        const resized = resizeRgbBicubic(img, p.resized.width, p.resized.height);
        ok(`image${k}.resized_uint8`, maxAbsDiff(resized.data, c.ints(refResized)), 0);
      }
      pixels.push(p.pixelValues);
      grids.push(p.grid);
    }
    if (c.has('pixel_values')) ok('pixel_values', maxAbsDiff(concatF32(pixels), c.f32('pixel_values')), 0);
    if (imageGrids) ok('image_grid_thw', mismatches(grids.flat(), imageGrids.flat()), 0);
    imageGrids = grids;
  }
  const frameFiles: string[] = j.frame_files ?? [];
  const videoSource = frameFiles.length ? { dir: c.dir, files: frameFiles, fps: Number(j.video_fps) } : borrowFrames(c, all);
  if (videoSource) {
    const frames: RgbImage[] = [];
    for (const f of videoSource.files) frames.push(await loadImage(path.join(videoSource.dir, f)));
    const p = preprocessVideo({ frames, fps: videoSource.fps }, model.processor.video);
    if (c.has('pixel_values_videos')) ok('pixel_values_videos', maxAbsDiff(p.pixelValues, c.f32('pixel_values_videos')), 0);
    if (videoGrids) ok('video_grid_thw', mismatches(p.grid, videoGrids.flat()), 0);
    if (Array.isArray(j.sampled_frame_indices)) ok('sampled_frame_indices', mismatches(p.sampledIndices, j.sampled_frame_indices), 0);
    if (Array.isArray(j.timestamps_seconds)) ok('timestamps', maxAbsDiff(p.timestamps, j.timestamps_seconds), 0);
    videoGrids = [p.grid];
    timestamps = [p.timestamps];
  }

  // Prompt expansion and ids
  const refExpanded = c.text('expanded_prompt_text');
  const siblingPrompt = sibling(c, all)?.json.prompt_text;
  const prompt: string | undefined = typeof j.prompt_text === 'string' ? j.prompt_text : typeof siblingPrompt === 'string' ? siblingPrompt : undefined;
  let idsText = refExpanded ?? prompt;
  if (prompt && refExpanded && (imageGrids || videoGrids)) {
    const layout = videoLayoutOf(refExpanded);
    const ours = expandPrompt(
      prompt,
      { images: imageGrids, videos: (videoGrids ?? []).map((g, k) => ({ grid: g, timestamps: timestamps?.[k] ?? [] })) },
      { videoLayout: layout, mergeSize: merge },
    );
    ok(`expanded_prompt(${layout})`, ours === refExpanded ? 0 : 1, 0, textDiff(ours, refExpanded));
    idsText = ours;
  }
  if (idsText !== undefined && c.has('input_ids')) {
    const ids = model.tokenizer.encode(idsText);
    const ref = c.ints('input_ids');
    ok('input_ids', mismatches(ids, ref), 0);
    if (c.has('mm_token_type_ids')) {
      const cfg = model.model.cfg;
      const types = ids.map((id) => (id === cfg.imageTokenId ? 1 : id === cfg.videoTokenId ? 2 : 0));
      ok('mm_token_type_ids', mismatches(types, c.ints('mm_token_type_ids')), 0);
    }
  }
  if (!c.has('input_ids')) return;

  // Model inputs exactly as HF had them (so each stage is checked on its own)
  const inputs: ModelInputs = { ids: c.ints('input_ids') };
  if (c.has('image_grid_thw')) {
    inputs.imageGrids = c.grids('image_grid_thw');
    inputs.pixelValues = c.has('pixel_values') ? c.f32('pixel_values') : undefined;
  }
  if (c.has('video_grid_thw')) {
    inputs.videoGrids = c.grids('video_grid_thw');
    inputs.pixelValuesVideos = c.has('pixel_values_videos') ? c.f32('pixel_values_videos') : borrowPixels(c, all);
  }
  if (c.has('position_ids')) {
    const pos = model.model.positions(inputs);
    const ref = c.ints('position_ids');
    ok('position_ids', mismatches([...pos.t, ...pos.h, ...pos.w], ref), 0);
    if (c.has('rope_deltas')) ok('rope_deltas', Math.abs(pos.delta - c.ints('rope_deltas')[0]), 0);
  }
  const hasModelStages = c.has('logits_sel') || c.has('final_hidden');
  if (!hasModelStages) return;
  if ((inputs.imageGrids && !inputs.pixelValues) || (inputs.videoGrids && !inputs.pixelValuesVideos)) {
    ok('model', 1, 0, 'the case has vision grids but no pixel values (nor a sibling case holding them)');
    return;
  }

  const traced = new Map<string, Float32Array>();
  const cache = model.model.newCache();
  const pre = model.model.prefill(inputs, cache, { allLogits: true, trace: (stage, data) => traced.set(stage, data.slice()) });
  for (const kind of ['image', 'video']) {
    for (const [ref, ours] of Object.entries(VISION_STAGES)) {
      const name = `${kind}_${ref}`;
      const got = traced.get(`${kind}.${ours}`);
      if (c.has(name) && got) ok(`${kind}.${ours}`, maxAbsDiff(got, c.f32(name)), TOLERANCE.vision);
    }
    for (let k = 0; c.has(`${kind}_deepstack_${k}`); k++) {
      const got = traced.get(`${kind}.deepstack.${k}`);
      ok(`${kind}.deepstack.${k}`, got ? maxAbsDiff(got, c.f32(`${kind}_deepstack_${k}`)) : Infinity, TOLERANCE.vision);
    }
  }
  for (let l = 0; c.has(`text_layer_input_${l}`); l++) {
    const got = traced.get(`text.layer_input.${l}`);
    ok(`text.layer_input.${l}`, got ? maxAbsDiff(got, c.f32(`text_layer_input_${l}`)) : Infinity, TOLERANCE.hidden);
  }
  if (c.has('final_hidden')) ok('text.final_hidden', maxAbsDiff(traced.get('text.final_hidden')!, c.f32('final_hidden')), TOLERANCE.hidden);

  const L = inputs.ids.length;
  const V = pre.logits.length / L;
  if (c.has('logits_sel')) {
    const sel = c.ints('logits_sel_ids');
    ok('logits(selected ids)', selectedDiff(pre.logits, V, L, sel, c.f32('logits_sel')), TOLERANCE.logits);
  }
  if (c.has('logits')) ok('logits(all)', maxAbsDiff(pre.logits, c.f32('logits')), TOLERANCE.logits);
  for (const t of c.tensors!.tensors.keys()) {
    const m = /^logits_last(\d+)$/.exec(t);
    if (m) {
      const n = Number(m[1]);
      ok(`logits(last ${n})`, maxAbsDiff(pre.logits.subarray((L - n) * V), c.f32(t)), TOLERANCE.logits);
    }
  }

  // Top-1 at every position: flips are allowed only where HF's own top-2 margin is below 1e-3
  if (c.has('logits_top16_ids') && c.has('logits_top16_vals')) {
    const ids = c.ints('logits_top16_ids');
    const vals = c.f32('logits_top16_vals');
    const rows = ids.length / 16;
    let flips = 0;
    let close = 0;
    for (let r = 0; r < rows && r < L; r++) {
      const at = L - rows + r; // the top-16 rows are the last ones when a case stores fewer
      if (vals[r * 16] - vals[r * 16 + 1] < 1e-3) close++;
      if (argmax(pre.logits.subarray(at * V, (at + 1) * V)) !== ids[r * 16]) flips++;
    }
    emit({ ...check(c.name, 'top1(all positions)', flips, close, `${flips} of ${rows} positions differ; ${close} have an HF top-2 margin < 1e-3`), total: rows });
  }

  // KV-cache decoding, greedy, step by step
  if (c.has('generated_ids')) {
    const ref = c.ints('generated_ids');
    const stepSel = c.has('gen_step_logits_sel') ? c.f32('gen_step_logits_sel') : undefined;
    const sel = c.has('logits_sel_ids') ? c.ints('logits_sel_ids') : undefined;
    const ours: number[] = [];
    let logits = pre.logits.subarray((L - 1) * V);
    let stepDiff = 0;
    for (let s = 0; s < ref.length; s++) {
      if (stepSel && sel) stepDiff = Math.max(stepDiff, selectedDiff(logits, V, 1, sel, stepSel.subarray(s * sel.length, (s + 1) * sel.length)));
      const id = argmax(logits);
      ours.push(id);
      // Follow the reference tokens so a single flip does not hide later steps' numbers.
      logits = model.model.decode(ref[s], cache, pre.positions.delta);
    }
    if (stepSel) ok('decode_step_logits', stepDiff, TOLERANCE.logits);
    ok('greedy_tokens', mismatches(ours, ref), 0);
    if (typeof j.generated_text === 'string') {
      const text = model.tokenizer.decode(ours, { skipSpecialTokens: true });
      ok('generated_text', text === j.generated_text ? 0 : 1, 0, textDiff(text, j.generated_text));
    }
  }
}

/** 'v5' keeps the template's outer vision_start before the first timestamp. */
function videoLayoutOf(expanded: string): VideoPromptLayout {
  return /<\|vision_start\|><[\d.]+ seconds>/.test(expanded) ? 'v5' : 'v4.57';
}

function selectedDiff(logits: Float32Array, V: number, rows: number, sel: number[], ref: Float32Array): number {
  let m = 0;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < sel.length; k++) m = Math.max(m, Math.abs(logits[r * V + sel[k]] - ref[r * sel.length + k]));
  }
  return m;
}

/** A case without its own video frames may share them with a sibling holding the same pixels. */
function sibling(c: FixtureCase, all: FixtureCase[]): FixtureCase | undefined {
  const want = c.json.pixel_values_videos_sha256_16;
  if (typeof want !== 'string') return undefined;
  return all.find((o) => o !== c && o.has('pixel_values_videos') && o.sha256('pixel_values_videos').startsWith(want));
}

function borrowPixels(c: FixtureCase, all: FixtureCase[]): Float32Array | undefined {
  return sibling(c, all)?.f32('pixel_values_videos');
}

/**
 * Frames for a case that lists none: a sibling with the same pixels, or (a processor-only case
 * that re-samples the same clip at another stated fps) a sibling whose frame list matches the
 * frame count and size in this case's video metadata.
 */
function borrowFrames(c: FixtureCase, all: FixtureCase[]): { dir: string; files: string[]; fps: number } | undefined {
  const s = sibling(c, all);
  if (s && Array.isArray(s.json.frame_files)) return { dir: s.dir, files: s.json.frame_files, fps: Number(s.json.video_fps) };
  const meta = c.json.video_metadata_passed;
  if (!meta || typeof meta !== 'object') return undefined;
  const fps = Number(c.json.video_fps ?? meta.fps);
  const match = all.find((o) => {
    const m = o.json.video_metadata_passed;
    return o !== c && Array.isArray(o.json.frame_files) && o.json.frame_files.length === meta.total_num_frames && m?.width === meta.width && m?.height === meta.height;
  });
  return match ? { dir: match.dir, files: match.json.frame_files, fps } : undefined;
}

