import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import type { SamplingOptions } from './sampler.ts';

/** The defaults a model folder's generation_config.json sets. */
export interface GenerationDefaults extends SamplingOptions {
  eosTokenIds: number[];
  padTokenId?: number;
  maxNewTokens?: number;
}

/** Qwen3-VL's ids when a folder has no generation_config.json: <|im_end|> and <|endoftext|>. */
const FALLBACK_EOS = [151645, 151643];

export function loadGenerationDefaults(dir: string): GenerationDefaults {
  const file = path.join(dir, 'generation_config.json');
  if (!fs.existsSync(file)) return { eosTokenIds: FALLBACK_EOS };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `${file} is not valid JSON (${(e as Error).message})`, { file });
  }
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.map(Number) : typeof eos === 'number' ? [eos] : FALLBACK_EOS;
  const num = (k: string) => (typeof raw[k] === 'number' ? (raw[k] as number) : undefined);
  return {
    eosTokenIds,
    padTokenId: num('pad_token_id'),
    doSample: typeof raw.do_sample === 'boolean' ? raw.do_sample : undefined,
    temperature: num('temperature'),
    topK: num('top_k'),
    topP: num('top_p'),
    minP: num('min_p'),
    repetitionPenalty: num('repetition_penalty'),
    maxNewTokens: num('max_new_tokens'),
  };
}
