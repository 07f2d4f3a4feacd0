import type { TensorInfo } from './safetensors.ts';
import type { TensorSource } from './tensor-reader.ts';

/**
 * Canonical tensor names are the released Qwen3-VL ones (`model.visual.*`,
 * `model.language_model.*`, `lm_head.weight`). Older exports use the Qwen2.5-VL layout
 * (`visual.*`, `model.layers.*`, `model.embed_tokens.*`, `model.norm.*`); this view maps
 * canonical names onto whichever layout the checkpoint has.
 */
export function canonicalView(src: TensorSource & { names(): string[] }): TensorSource & { names(): string[] } {
  const names = src.names();
  const modern = names.some((n) => n.startsWith('model.language_model.') || n.startsWith('model.visual.'));
  if (modern) return src;
  const legacy = (canonical: string): string => {
    if (canonical.startsWith('model.visual.')) return 'visual.' + canonical.slice('model.visual.'.length);
    if (canonical.startsWith('model.language_model.')) return 'model.' + canonical.slice('model.language_model.'.length);
    return canonical;
  };
  const toCanonical = (actual: string): string => {
    if (actual.startsWith('visual.')) return 'model.' + actual;
    if (actual.startsWith('model.')) return 'model.language_model.' + actual.slice('model.'.length);
    return actual;
  };
  return {
    has: (n) => src.has(legacy(n)),
    info: (n): TensorInfo => ({ ...src.info(legacy(n)), name: n }),
    bytes: (n) => src.bytes(legacy(n)),
    names: () => names.map(toCanonical),
  };
}
