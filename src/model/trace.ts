/**
 * Optional observer of intermediate tensors, called with a stage name (e.g. "vision.embeds",
 * "text.layer_input.1") and a row-major tensor. Parity checks compare these with HF's.
 */
export type Trace = (stage: string, data: Float32Array, shape: number[]) => void;
