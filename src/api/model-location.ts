/**
 * Whether a model argument (`--model`, `Qwen3VL.fromPretrained`) names a local folder or a hub
 * repository. What exists is local. What does not is still taken as a mistyped local path, and
 * never sent to the hub, when it looks like one: it starts with `.`, `/` or `~`, holds a
 * backslash or more than one `/` (hub ids are `org/name`), or its first segment is a folder here
 * (`models/dem` beside `models/`). A `hf:` or `modelscope:` prefix always means the hub.
 */
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QvlError } from '../errors.ts';

export type ModelLocation = { kind: 'local'; dir: string } | { kind: 'hub'; id: string };

const HUB_PREFIX = /^(modelscope|ms|hf|huggingface):/;
const HUB_ID = /^[\w.-]+\/[\w.-]+$/;

/** `value` as a local folder (it exists) or a hub id; throws FILE_NOT_FOUND for a missing local path. */
export function locateModel(value: string): ModelLocation {
  if (HUB_PREFIX.test(value)) return { kind: 'hub', id: value };
  const expanded = value === '~' || value.startsWith('~/') ? path.join(os.homedir(), value.slice(1)) : value;
  if (existsSync(expanded)) {
    if (!statSync(expanded).isDirectory()) throw new QvlError('FILE_NOT_FOUND', `${value} is a file, not a model folder`, { model: value });
    return { kind: 'local', dir: path.resolve(expanded) };
  }
  const firstSegment = value.split('/')[0]!;
  const looksLocal = /^[.~/]/.test(value) || value.includes('\\') || value.split('/').length > 2;
  if (looksLocal) throw new QvlError('FILE_NOT_FOUND', `no such folder: ${value}`, { model: value });
  if (HUB_ID.test(value) && existsSync(firstSegment) && statSync(firstSegment).isDirectory()) {
    throw new QvlError('FILE_NOT_FOUND', `no such folder: ${value} (for the hub repository of that name, write hf:${value})`, { model: value });
  }
  if (HUB_ID.test(value)) return { kind: 'hub', id: value };
  throw new QvlError('FILE_NOT_FOUND', `no such folder: ${value}, and it is not a hub id of the form org/name`, { model: value });
}
