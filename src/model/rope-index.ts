import { QvlError } from '../errors.ts';

export type Grid = [number, number, number];

export interface RopePositions {
  /** rows T, H, W; each of prompt length */
  t: Int32Array;
  h: Int32Array;
  w: Int32Array;
  /** max position + 1 − length; decode step at cache index p uses p + delta on all axes */
  delta: number;
}

export interface RopeIndexTokens {
  imageTokenId: number;
  videoTokenId: number;
}

/**
 * MRoPE positions of a prompt (HF `get_rope_index`). Text advances all three axes by one; a run
 * of vision pads with merged grid (t, h, w) takes T = s + frame, H = s + row, W = s + col and the
 * next token continues at s + max(t, h, w). Videos are split into one (1, h, w) block per
 * temporal group, since each group sits in its own vision_start…vision_end.
 */
export function ropeIndex(
  ids: ArrayLike<number>,
  imageGrids: readonly Grid[],
  videoGrids: readonly Grid[],
  tokens: RopeIndexTokens,
  mergeSize: number,
): RopePositions {
  const L = ids.length;
  const t = new Int32Array(L);
  const h = new Int32Array(L);
  const w = new Int32Array(L);
  const frames: Grid[] = [];
  for (const [gt, gh, gw] of videoGrids) for (let k = 0; k < gt; k++) frames.push([1, gh, gw]);
  let img = 0;
  let vid = 0;
  let next = 0;
  let maxPos = -1;
  let i = 0;
  while (i < L) {
    const id = ids[i];
    if (id === tokens.imageTokenId || id === tokens.videoTokenId) {
      const isImage = id === tokens.imageTokenId;
      const grid = isImage ? imageGrids[img++] : frames[vid++];
      if (!grid) {
        throw new QvlError(
          'TOKEN_COUNT_MISMATCH',
          `the prompt has more ${isImage ? 'image' : 'video'} blocks than ${isImage ? 'images' : 'video frame groups'} supplied`,
          { position: i },
        );
      }
      const gt = grid[0];
      const gh = grid[1] / mergeSize;
      const gw = grid[2] / mergeSize;
      const count = gt * gh * gw;
      for (let k = 0; k < count; k++) {
        const j = i + k;
        if (j >= L || ids[j] !== id) {
          throw new QvlError(
            'TOKEN_COUNT_MISMATCH',
            `a ${isImage ? 'image' : 'video'} block at token ${i} has ${k} pad tokens, but its grid ${JSON.stringify(grid)} needs ${count}`,
            { position: i, found: k, expected: count },
          );
        }
        const a = Math.floor(k / (gh * gw));
        const r = Math.floor((k % (gh * gw)) / gw);
        const c = k % gw;
        t[j] = next + a;
        h[j] = next + r;
        w[j] = next + c;
      }
      maxPos = Math.max(maxPos, next + Math.max(gt, gh, gw) - 1);
      next += Math.max(gt, gh, gw);
      i += count;
    } else {
      t[i] = h[i] = w[i] = next;
      maxPos = Math.max(maxPos, next);
      next++;
      i++;
    }
  }
  if (img !== imageGrids.length || vid !== frames.length) {
    throw new QvlError(
      'TOKEN_COUNT_MISMATCH',
      `the prompt has ${img} image and ${vid} video-group blocks, but ${imageGrids.length} images and ${frames.length} video groups were supplied`,
      { imageBlocks: img, videoBlocks: vid },
    );
  }
  return { t, h, w, delta: maxPos + 1 - L };
}
