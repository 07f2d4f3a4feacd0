/**
 * The model's chat template: loaded from a model folder and rendered exactly as
 * transformers' `apply_chat_template(..., tokenize=False)` renders it.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { QvlError } from '../errors.ts';
import { compileTemplate, renderTemplate, TemplateRaisedError, type CompiledTemplate } from './hf-jinja.ts';

export interface RenderOptions {
  /** Append the assistant header (and `<think>\n` for Thinking models). HF's default: false. */
  addGenerationPrompt?: boolean;
  /** Tool schemas (OpenAI `{type:'function', function:{…}}` objects), rendered with tojson. */
  tools?: object[];
  /** Prefix "Picture k: " / "Video k: " before each vision block. */
  addVisionId?: boolean;
  /** Further template variables (HF's extra apply_chat_template kwargs). */
  extra?: Record<string, unknown>;
}

export interface ChatTemplateInit {
  /** Where the text came from, for error messages. */
  origin?: string;
  /** Variables transformers passes alongside (bos_token, eos_token, pad_token, …). */
  specialTokens?: Record<string, unknown>;
}

export class ChatTemplate {
  readonly source: string;
  readonly origin: string;
  private readonly program: CompiledTemplate;
  private readonly specialTokens: Record<string, unknown>;

  constructor(source: string, init: ChatTemplateInit = {}) {
    this.source = source;
    this.origin = init.origin ?? 'chat template';
    this.specialTokens = { ...init.specialTokens };
    try {
      this.program = compileTemplate(source);
    } catch (e) {
      throw new QvlError('TEMPLATE_ERROR', `${this.origin}: cannot parse the chat template: ${(e as Error).message}`, {
        origin: this.origin,
      });
    }
  }

  /** The prompt text for `messages` (HF-style messages, e.g. from normalizeMessages). */
  render(messages: readonly object[], opts: RenderOptions = {}): string {
    // Render errors reach clients (a server's 400s): they name the template file, not where it lives.
    const who = basename(this.origin);
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new QvlError('TEMPLATE_ERROR', `${who}: no messages to render`, { origin: who });
    }
    if (opts.tools !== undefined && !Array.isArray(opts.tools)) {
      throw new QvlError('TEMPLATE_ERROR', `${who}: tools must be an array`, { origin: who });
    }
    const context: Record<string, unknown> = {
      ...this.specialTokens,
      ...(opts.extra === undefined ? {} : (toTemplateData(opts.extra) as Record<string, unknown>)),
      messages: toTemplateData(messages),
      tools: opts.tools === undefined ? null : toTemplateData(opts.tools),
      documents: null,
      add_generation_prompt: opts.addGenerationPrompt === true,
    };
    if (opts.addVisionId !== undefined) context.add_vision_id = opts.addVisionId;
    try {
      return renderTemplate(this.program, context);
    } catch (e) {
      if (e instanceof QvlError) throw e;
      if (e instanceof TemplateRaisedError) {
        throw new QvlError('TEMPLATE_ERROR', `${who} refused the messages: ${e.message}`, {
          origin: who,
          raised: e.message,
        });
      }
      throw new QvlError('TEMPLATE_ERROR', `${who}: rendering failed: ${(e as Error).message}`, {
        origin: who,
      });
    }
  }
}

/**
 * Converts caller data into plain JSON-like values for the template: binary media becomes a
 * short placeholder (the template only tests which keys a part has), undefined members are
 * dropped as JSON would, and cycles are refused.
 */
function toTemplateData(value: unknown, seen: Set<object> = new Set()): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return value;
  }
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (typeof value === 'bigint') return Number(value);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return '[binary data]';
  if (value instanceof Date) return value.toISOString();
  const obj = value as object;
  if (seen.has(obj)) throw new QvlError('TEMPLATE_ERROR', 'messages contain a circular reference');
  seen.add(obj);
  let out: unknown;
  if (Array.isArray(obj)) {
    out = obj.map((v) => toTemplateData(v, seen) ?? null);
  } else {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) {
      const c = toTemplateData(v, seen);
      if (c !== undefined) o[k] = c;
    }
    out = o;
  }
  seen.delete(obj);
  return out;
}

async function readIfFile(path: string): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  return readFile(path, 'utf8');
}

function parseJson(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new QvlError('CONFIG_INVALID', `${file}: expected a JSON object`, { file });
  }
  return v as Record<string, unknown>;
}

/** A `chat_template` value: a string, or named templates as [{name, template}] or {name: template}. */
function pickTemplate(value: unknown, file: string, name: string): string {
  if (typeof value === 'string') return value;
  const named = new Map<string, unknown>();
  if (Array.isArray(value)) {
    for (const entry of value) {
      if (entry !== null && typeof entry === 'object') {
        const { name: n, template } = entry as { name?: unknown; template?: unknown };
        if (typeof n === 'string') named.set(n, template);
      }
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [n, t] of Object.entries(value)) named.set(n, t);
  }
  const chosen = named.get(name);
  if (typeof chosen === 'string') return chosen;
  throw new QvlError('TEMPLATE_ERROR', `${file}: chat_template has no template named ${JSON.stringify(name)}`, {
    file,
    available: [...named.keys()],
  });
}

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

function specialTokensOf(config: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (config === undefined) return out;
  for (const key of SPECIAL_TOKEN_KEYS) {
    const v = config[key];
    if (typeof v === 'string') out[key] = v;
    else if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
      out[key] = (v as { content: string }).content;
    }
  }
  if (Array.isArray(config.additional_special_tokens)) {
    out.additional_special_tokens = config.additional_special_tokens;
  }
  return out;
}

/**
 * Loads the chat template of a model folder, in transformers' order of precedence:
 * `chat_template.jinja`, then `chat_template.json` (`chat_template` key), then
 * `tokenizer_config.json` (`chat_template` key). `name` picks one of several named templates.
 */
export async function loadChatTemplate(modelDir: string, opts: { name?: string } = {}): Promise<ChatTemplate> {
  const name = opts.name ?? 'default';
  const configFile = join(modelDir, 'tokenizer_config.json');
  const configText = await readIfFile(configFile);
  const config = configText === undefined ? undefined : parseJson(configText, configFile);
  const specialTokens = specialTokensOf(config);

  const jinjaFile = join(modelDir, 'chat_template.jinja');
  const jinja = await readIfFile(jinjaFile);
  if (jinja !== undefined) return new ChatTemplate(jinja, { origin: jinjaFile, specialTokens });

  const jsonFile = join(modelDir, 'chat_template.json');
  const jsonText = await readIfFile(jsonFile);
  if (jsonText !== undefined) {
    const doc = parseJson(jsonText, jsonFile);
    if (doc.chat_template === undefined) {
      throw new QvlError('TEMPLATE_ERROR', `${jsonFile} has no "chat_template" key`, { file: jsonFile });
    }
    return new ChatTemplate(pickTemplate(doc.chat_template, jsonFile, name), { origin: jsonFile, specialTokens });
  }

  if (config?.chat_template !== undefined && config.chat_template !== null) {
    return new ChatTemplate(pickTemplate(config.chat_template, configFile, name), {
      origin: configFile,
      specialTokens,
    });
  }
  throw new QvlError(
    'FILE_NOT_FOUND',
    `no chat template in ${modelDir}: looked for chat_template.jinja, chat_template.json and tokenizer_config.json's chat_template`,
    { file: modelDir },
  );
}
