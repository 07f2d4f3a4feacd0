/**
 * Messages in the shape the Qwen3-VL chat templates read (Hugging Face style). Media parts
 * carry no data here: the template only needs to know that an image or video sits there;
 * the data travels separately (see messages.ts).
 */

export type TemplateRole = 'system' | 'user' | 'assistant' | 'tool';

export type TemplateContentPart = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' };

export interface TemplateToolCall {
  id?: string;
  type: 'function';
  /** `arguments` is an object (rendered with tojson) or a string (rendered verbatim). */
  function: { name: string; arguments: unknown };
}

export interface TemplateMessage {
  role: TemplateRole;
  content: string | TemplateContentPart[];
  tool_calls?: TemplateToolCall[];
  /** Thinking templates render it inside <think>…</think> for turns after the last user query. */
  reasoning_content?: string;
  tool_call_id?: string;
  name?: string;
}
