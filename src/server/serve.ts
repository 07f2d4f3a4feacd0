/**
 * Starts qvl's OpenAI-compatible server: listens at once (answering 503 until the model is
 * loaded), loads the model on an inference worker, and stops cleanly.
 */
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { PromptParts } from '../api/prompt.ts';
import { loadProcessorConfig } from '../processor/index.ts';
import { loadChatTemplate } from '../template/chat-template.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { createApp } from './app.ts';
import { readinessCheck, type ServerContext } from './context.ts';
import type { ServerEngine } from './engine.ts';
import { resolveLimits, type ServerLimits } from './limits.ts';
import { Scheduler } from './scheduler.ts';

export interface ServeOptions {
  engine: ServerEngine;
  /** the model folder (tokenizer, template and processor config for the cost preview) */
  modelDir: string;
  /** names clients use for `model`; the first is listed by /v1/models */
  modelNames: string[];
  host?: string;
  /** 0 picks a free port */
  port?: number;
  limits?: Partial<ServerLimits>;
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  context: ServerContext;
  /** stops listening and closes the engine */
  close(): Promise<void>;
}

export function promptPartsLoader(dir: string): () => Promise<PromptParts> {
  let parts: Promise<PromptParts> | undefined;
  return () =>
    (parts ??= (async () => {
      const [tokenizer, template] = await Promise.all([loadTokenizer(dir), loadChatTemplate(dir)]);
      const processor = loadProcessorConfig(dir);
      return { tokenizer, template, processor, mergeSize: processor.image.mergeSize };
    })());
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const limits = resolveLimits(o.limits);
  const context: ServerContext = {
    engine: o.engine,
    scheduler: new Scheduler(limits.maxQueue),
    limits,
    modelNames: o.modelNames,
    promptParts: promptPartsLoader(o.modelDir),
    requireReady: readinessCheck(o.engine),
  };
  const app = createApp(context, o.log);
  const host = o.host ?? '127.0.0.1';
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: o.port ?? 8000 }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${port}`,
    port,
    context,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await o.engine.close();
    },
  };
}
