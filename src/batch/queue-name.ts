/** Queue names: the default, and the characters BullMQ and Redis key names take. */
import { QvlError } from '../errors.ts';

export const DEFAULT_QUEUE = 'qvl';

export function checkQueueName(name: string): void {
  // BullMQ refuses ':' in queue names; the name becomes part of every Redis key of the queue
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) throw new QvlError('OPTION_INVALID', `--queue: "${name}" must be 1–100 letters, digits, '.', '_' or '-'`, { param: 'queue' });
}
