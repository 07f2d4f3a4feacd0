/** The pieces that turn a request into token ids without the weights: tokenizer, chat template, processor config. */
import { loadProcessorConfig } from '../processor/index.ts';
import { loadChatTemplate } from '../template/chat-template.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import type { PromptParts } from './prompt.ts';

export async function loadPromptParts(dir: string): Promise<PromptParts> {
  const [tokenizer, template] = await Promise.all([loadTokenizer(dir), loadChatTemplate(dir)]);
  const processor = loadProcessorConfig(dir);
  return { tokenizer, template, processor, mergeSize: processor.image.mergeSize };
}

/** Loads the parts on first use, once. */
export function promptPartsLoader(dir: string): () => Promise<PromptParts> {
  let parts: Promise<PromptParts> | undefined;
  return () => (parts ??= loadPromptParts(dir));
}
