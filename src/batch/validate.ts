/**
 * The lines of an OpenAI Batch input file, checked the way the server checks a chat request
 * (`parseChatRequest`, with the same limits the workers apply), plus what a batch adds: a unique
 * `custom_id`, `method` POST, `url` /v1/chat/completions, one model for the whole file, no
 * streaming, local media only as absolute paths under the allowed folders. Every refusal names
 * the line and the field; the caller enqueues nothing until every line has passed.
 */
import { QvlError } from '../errors.ts';
import { HttpError, toHttpError } from '../server/errors.ts';
import { parseJsonBody } from '../server/json-body.ts';
import type { ServerLimits } from '../server/limits.ts';
import { parseChatRequest, type ChatRequest, type ModelBounds } from '../server/request.ts';
import { BATCH_ENDPOINT } from './format.ts';
import { checkLocalSources } from './local-media.ts';

export interface LineRules {
  limits: ServerLimits;
  /** the models a line may name (a server's served names); undefined: any, the same on every line */
  modelNames?: readonly string[];
  modelBounds?: ModelBounds;
}

export interface BatchRequest {
  customId: string;
  /** line number in the input file (1-based, blank lines counted) */
  line: number;
  /** the chat request body as written: workers validate it again against their own limits */
  body: Record<string, unknown>;
}

/** custom_id values are keys in Redis and in result files: bounded and printable. */
const MAX_CUSTOM_ID = 512;

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function lineError(line: number, param: string | undefined, message: string): QvlError {
  return new QvlError('MESSAGE_INVALID', `line ${line}: ${message}`, { line, param: param ?? null });
}

/** Why a chat body is not acceptable, as `body.<field>: …` (the errors of parseChatRequest and normalization). */
function bodyProblem(e: unknown): { param: string; message: string } {
  if (!(e instanceof QvlError) && !(e instanceof HttpError)) throw e;
  const param = toHttpError(e).param;
  return { param: param ? `body.${param}` : 'body', message: `body: ${e.message}` };
}

/**
 * One chat request body against the rules (the worker calls this before running a job, so a line
 * that passed a submitter with looser limits is still refused by a stricter worker).
 */
export function checkChatBody(body: unknown, rules: LineRules, modelNames: readonly string[]): ChatRequest {
  const req = parseChatRequest(body, rules.limits, modelNames, rules.modelBounds);
  if (req.stream) throw new QvlError('OPTION_INVALID', 'stream: a batch request cannot stream; leave "stream" out', { param: 'stream' });
  checkLocalSources(req.messages as unknown[], rules.limits.media.allowedLocalDirs ?? []);
  return req;
}

/** Checks the lines of one input file in order; `check` throws on the first bad line. */
export class BatchValidator {
  private readonly seen = new Set<string>();
  /** the model every line names */
  model?: string;
  count = 0;
  private readonly rules: LineRules;

  constructor(rules: LineRules) {
    this.rules = rules;
  }

  /** A request, or undefined for a blank line. */
  check(text: string, line: number): BatchRequest | undefined {
    if (text.trim() === '') return undefined;
    const limit = this.rules.limits.maxBodyBytes;
    if (Buffer.byteLength(text) > limit) throw lineError(line, undefined, `the line is over the limit of ${limit} bytes for one request`);
    let v: unknown;
    try {
      v = parseJsonBody(text);
    } catch (e) {
      throw lineError(line, undefined, (e as Error).message.replace('the request body', 'the line'));
    }
    if (!isRecord(v)) throw lineError(line, undefined, 'expected a JSON object {"custom_id", "method", "url", "body"}');
    const { custom_id: customId, method, url, body } = v;
    if (typeof customId !== 'string' || customId === '') throw lineError(line, 'custom_id', 'custom_id: a non-empty string is required');
    if (customId.length > MAX_CUSTOM_ID) throw lineError(line, 'custom_id', `custom_id: at most ${MAX_CUSTOM_ID} characters`);
    if (this.seen.has(customId)) throw lineError(line, 'custom_id', `custom_id: "${customId}" appears on an earlier line; each request needs its own`);
    if (method !== 'POST') throw lineError(line, 'method', `method: expected "POST", got ${JSON.stringify(method ?? null)}`);
    if (url !== BATCH_ENDPOINT) throw lineError(line, 'url', `url: expected "${BATCH_ENDPOINT}", got ${JSON.stringify(url ?? null)}`);
    if (!isRecord(body)) throw lineError(line, 'body', 'body: expected the chat request as a JSON object');

    // One model per batch, as OpenAI requires: the first line decides unless the caller names them.
    if (typeof body.model === 'string' && this.rules.modelNames === undefined) {
      if (this.model !== undefined && body.model !== this.model) {
        throw lineError(line, 'body.model', `body.model: "${body.model}" differs from the batch's model "${this.model}" (line 1 names it); a batch runs on one model`);
      }
    }
    const names = this.rules.modelNames ?? (typeof body.model === 'string' ? [this.model ?? body.model] : []);
    try {
      checkChatBody(body, this.rules, names);
    } catch (e) {
      const p = bodyProblem(e);
      throw lineError(line, p.param, p.message);
    }
    this.model ??= body.model as string;
    this.seen.add(customId);
    this.count++;
    return { customId, line, body };
  }
}
