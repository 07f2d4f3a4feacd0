/** qvl's public library surface. */
export { Qwen3VL, type ChatOptions, type ChatResult, type ChatStream, type ChatUsage, type FromPretrainedOptions, type ModelInfo } from './api/qwen3vl.ts';
export { WorkerModel, type WorkerLoadOptions } from './api/worker-host.ts';
export type { PreparedPrompt, PromptOptions } from './api/prompt.ts';
export { QvlError, isQvlError, type QvlErrorCode } from './errors.ts';
export { parseGrounding, parseOutput, parseToolCalls, splitThinking, type Grounding, type ParsedOutput } from './generate/parse/index.ts';
export { resolveModel, type ResolveModelOptions, type ResolvedModel } from './hub/index.ts';
export { loadImage, loadVideo, renderPdf } from './media/index.ts';
export { estimateMediaCost, type CostItem, type CostRequest, type MediaCost, type MediaGeometry } from './api/media-cost.ts';
export { frameSampler, imageTokenCost, videoTokenCost } from './processor/index.ts';
export { runParity, type ParityOptions } from './parity/run-parity.ts';
export type { Backend } from './kernels/backend.ts';
export type { BackendName, InstructionSet } from './kernels/select.ts';
