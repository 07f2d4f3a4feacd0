/** Output parsers: reasoning split, tool calls, grounding, and JSON-constrained decoding. */
export { promptOpensThink, splitThinking, ThinkStreamSplitter, THINK_CLOSE, THINK_OPEN, type ThinkDelta, type ThinkSplit } from './think.ts';
export { parseToolCalls, parseToolCallBody, ToolCallStreamParser, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, type ParsedToolCall, type ToolStreamEvent } from './tool-calls.ts';
export { parseGrounding, toPixel, type Grounding, type GroundingBox, type GroundingOptions, type GroundingPoint, type ImageSize } from './grounding.ts';
export { findJsonObjects } from './lenient-json.ts';
export { groundingFor, OutputStreamParser, parseOutput, type OutputEvent, type OutputGrounding, type OutputParseOptions, type ParsedOutput } from './output.ts';
export { compileJsonSchema, unsupportedKeywords, type JsonNode } from './json-schema.ts';
export { constraintStart, createConstraint, JsonConstraint, toolCallState, type ConstraintSpec } from './json-constraint.ts';
export { buildTokenIndex, type TokenIndex, type VocabSource } from './token-index.ts';
