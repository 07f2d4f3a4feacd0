/** Decoded pixels, the hand-off between media/ (decoding) and processor/ (model preprocessing). */

/** 8-bit RGB, row-major, 3 bytes per pixel (HWC), no padding between rows. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * A video as decoded frames. Either the whole clip (`indices` absent: frame k is source frame k,
 * the processor samples from them) or frames already sampled from a longer source (`indices[k]`
 * is the source index of frame k and `totalFrames` the source's frame count).
 */
export interface VideoFrames {
  frames: RgbImage[];
  /** frames per second of the source */
  fps: number;
  indices?: number[];
  totalFrames?: number;
}
