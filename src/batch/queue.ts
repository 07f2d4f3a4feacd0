/**
 * The BullMQ side of a batch: one job per request, with an id made from the batch and the
 * request's index (adding a job twice keeps one), retries with exponential back-off, and the
 * request body as the job's data. Finished jobs are dropped from BullMQ once their outcome is
 * stored (the outcome is the record); failed ones stay a week with their reason and attempts.
 */
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';

/** BullMQ's key prefix: its keys are `qvl:<queue>:…`. */
export const BULL_PREFIX = 'qvl';

export interface JobData {
  batch: string;
  index: number;
  custom_id: string;
  /** line in the input file, for messages */
  line: number;
  body: Record<string, unknown>;
}

export const jobId = (batchId: string, index: number): string => `${batchId}-${index}`;

export function jobOptions(batchId: string, index: number, attempts: number): JobsOptions {
  return {
    jobId: jobId(batchId, index),
    attempts,
    backoff: { type: 'exponential', delay: 2000 },
    removeOnComplete: true,
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

export function openQueue(name: string, connection: Redis): Queue<JobData> {
  return new Queue<JobData>(name, { connection, prefix: BULL_PREFIX });
}
