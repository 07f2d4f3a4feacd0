/** Media: sources (paths, URLs, data URIs, Base64, bytes) → RGB images, video frames, PDF pages. */
export type { RgbImage, VideoFrames } from './rgb.ts';
export type { MediaKind, MediaSourceOptions } from './source-options.ts';
export { classifySource, loadMediaBytes, loadMediaFile, type MediaBytes, type MediaFile, type MediaSource, type SourceType } from './source.ts';
export { decodeBase64Strict, parseDataUri } from './base64.ts';
export { forbiddenAddressReason } from './ip-policy.ts';
export {
  decodeImage,
  loadImage,
  probeImage,
  DEFAULT_MAX_INPUT_PIXELS,
  type ImageBudget,
  type ImageDecodeOptions,
  type ImageHeader,
  type LoadedImage,
} from './image.ts';
export { ffmpegAvailable } from './ffmpeg.ts';
export {
  decodeVideoFrames,
  loadVideo,
  probeVideoFile,
  type FrameChooser,
  type LoadedVideo,
  type VideoDecodeLimits,
  type VideoLoadOptions,
  type VideoProbe,
} from './video.ts';
export { loadVideoFromImages, type ImageListVideoOptions } from './video-images.ts';
export { pageScale, probePdf, renderPdf, type PdfPageImage, type PdfPageSize, type PdfRenderOptions, type RenderedPdf } from './pdf.ts';
