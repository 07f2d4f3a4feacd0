/**
 * Which files of a model repository qvl needs, and whether a local folder holds a complete model.
 * Everything else in a repository (READMEs, images, other weight formats) is left on the hub.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const NEEDED = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.json',
  'merges.txt',
  'special_tokens_map.json',
  'added_tokens.json',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'video_preprocessor_config.json',
]);

/** Root-level files only: repositories keep alternative formats (GGUF, ONNX) in sub-folders. */
export function isModelFile(file: string): boolean {
  if (file.includes('/')) return false;
  return NEEDED.has(file) || file.endsWith('.safetensors') || file.endsWith('.safetensors.index.json');
}

/**
 * Whether a folder has what loading needs: config.json and every weight file (the shards the
 * index names, or model.safetensors). Used to trust a cached snapshot without asking the hub.
 */
export function isCompleteModelDir(dir: string): boolean {
  if (!existsSync(path.join(dir, 'config.json'))) return false;
  const index = path.join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    try {
      const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      const shards = new Set(Object.values(map));
      return shards.size > 0 && [...shards].every((s) => existsSync(path.join(dir, s)));
    } catch {
      return false;
    }
  }
  return existsSync(path.join(dir, 'model.safetensors'));
}
