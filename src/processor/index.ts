/** Public API of the processor: media pixels → model inputs, and prompt placeholder expansion. */
export * from './config.ts';
export * from './image-processor.ts';
export * from './video-processor.ts';
export * from './video-sampling.ts';
export * from './prompt-expansion.ts';
export * from './token-cost.ts';
export { smartResizeImage, smartResizeVideo, type Size, type SmartResizeOptions, type VideoSmartResizeOptions } from './smart-resize.ts';
export { resizeBicubicAa, resizeRgbBicubic, computeAxisTaps, type AxisTaps } from './resize-bicubic.ts';
export { roundHalfEven, pyFormat1f, pyFormatFixed, numpyLinspace } from './python-math.ts';
