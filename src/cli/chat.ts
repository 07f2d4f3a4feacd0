import fs from 'node:fs';
import readline from 'node:readline';
import type { Command } from 'commander';
import { WorkerModel, type WorkerCallOptions } from '../api/worker-host.ts';
import { isQvlError } from '../errors.ts';
import { OutputStreamParser } from '../generate/parse/output.ts';
import { addModelFlags, loadSettings, planAndReport, type ModelFlags } from './load.ts';
import { resolveModelDir } from './model-dir.ts';
import { addGenerationFlags, clearStatus, generationOptions, statusLine, type GenerationFlags } from './options.ts';
import { reportError } from './report-error.ts';
import { videoPart } from './run.ts';

type ChatFlags = ModelFlags & GenerationFlags;

const HELP = `Type a message and press Enter. Commands:
  /image <path|url>          attach an image to your next message (repeat for several)
  /video <path|url|folder> [fps]  attach a video file, or a folder of frames
  /pdf <path>                attach a PDF (each page becomes an image)
  /system <text>             set the system message (clears the conversation)
  /clear                     forget the conversation and attachments
  /help                      show this help
  /exit, exit, quit          quit (also Ctrl-D)
While an answer is being written, Ctrl-C stops it.`;

type Message = { role: string; content: string | object[] };

/** The REPL state: conversation, attachments, and what a command does to them. */
export class ChatSession {
  messages: Message[] = [];
  attachments: object[] = [];
  system?: string;

  constructor(system?: string) {
    this.system = system;
  }

  /** A line that ends the chat instead of going to the model: `exit` or `quit`, as typed alone. */
  static isExit(line: string): boolean {
    return /^(exit|quit)$/i.test(line.trim());
  }

  /** Handles a /command; returns text to print, or 'exit'. */
  command(line: string): string | 'exit' {
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const arg = line.trim().slice(cmd!.length).trim();
    switch (cmd) {
      case '/exit':
      case '/quit':
        return 'exit';
      case '/help':
        return HELP;
      case '/clear':
        this.messages = [];
        this.attachments = [];
        return 'conversation cleared';
      case '/system':
        this.system = arg || undefined;
        this.messages = [];
        return arg ? 'system message set; conversation cleared' : 'system message removed; conversation cleared';
      case '/image':
      case '/pdf': {
        if (!arg) return `usage: ${cmd} <path or URL>`;
        if (!/^(https?:|data:)/i.test(arg) && !fs.existsSync(arg)) return `no such file: ${arg}`;
        this.attachments.push(cmd === '/image' ? { type: 'image', image: arg } : { type: 'pdf', pdf: arg });
        return `attached ${cmd.slice(1)} ${arg} (${this.attachments.length} waiting for your next message)`;
      }
      case '/video': {
        const fps = rest.length > 1 && Number.isFinite(Number(rest[rest.length - 1])) ? Number(rest[rest.length - 1]) : undefined;
        const src = fps === undefined ? arg : rest.slice(0, -1).join(' ');
        if (!src) return 'usage: /video <path, URL or folder of frames> [fps]';
        if (!/^(https?:|data:)/i.test(src) && !fs.existsSync(src)) return `no such file or folder: ${src}`;
        try {
          this.attachments.push(videoPart(src, { fps }));
        } catch (e) {
          return isQvlError(e) ? e.message : String(e);
        }
        return `attached video ${src}${fps ? ` at ${fps} fps` : ''}`;
      }
      default:
        return `unknown command ${cmd}; /help lists them`;
    }
  }

  /** The messages for a new user turn (the turn is kept only if the answer succeeds). */
  turn(text: string): Message[] {
    const content = this.attachments.length > 0 ? [...this.attachments, { type: 'text', text }] : text;
    const history: Message[] = this.system ? [{ role: 'system', content: this.system }] : [];
    return [...history, ...this.messages, { role: 'user', content }];
  }

  commit(user: Message, answer: string): void {
    this.messages.push(user, { role: 'assistant', content: answer });
    this.attachments = [];
  }
}

export function registerChat(program: Command): void {
  const cmd = program
    .command('chat')
    .description('talk with the model in your terminal; attach images, videos and PDFs with /image, /video, /pdf')
    .addHelpText('after', `\n${HELP}\n\nExample:\n  qvl chat -m Qwen/Qwen3-VL-2B-Instruct`);
  addModelFlags(addGenerationFlags(cmd, 1024)).action(async (flags: ChatFlags) => {
    const { dir } = await resolveModelDir(flags.model);
    statusLine(`loading ${dir} …`);
    const settings = loadSettings(flags);
    planAndReport(dir, settings, flags);
    const model = await WorkerModel.load(dir, {
      ...settings,
      onProgress: (done, total) => statusLine(`loading ${dir}: ${Math.round((100 * done) / total)}%`),
    });
    clearStatus();
    const tty = process.stdout.isTTY === true;
    const dim = (s: string) => (tty ? `\x1b[2m${s}\x1b[22m` : s);
    process.stderr.write(`qvl chat: ${dir} (${model.info.backend} backend). /help for commands, /exit to quit.\n`);
    const session = new ChatSession(flags.system);
    const options: WorkerCallOptions = generationOptions(flags);
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true });
    let current: AbortController | undefined;
    rl.on('SIGINT', () => {
      if (current) current.abort();
      else rl.close();
    });
    const ask = () => rl.setPrompt('> ');
    ask();
    rl.prompt();
    try {
      for await (const line of rl) {
        const text = line.trim();
        if (ChatSession.isExit(text)) break;
        if (text.startsWith('/')) {
          const said = session.command(text);
          if (said === 'exit') break;
          process.stdout.write(said + '\n');
        } else if (text.length > 0) {
          const messages = session.turn(text);
          current = new AbortController();
          const s = model.stream(messages, { ...options, signal: current.signal });
          try {
            const prompt = await s.prompt;
            const parser = new OutputStreamParser({ startsInThink: prompt.startsInThink });
            let answer = '';
            let reasoned = false;
            const show = (events: ReturnType<OutputStreamParser['push']>) => {
              for (const e of events) {
                if (e.type === 'reasoning') {
                  reasoned = true;
                  process.stdout.write(dim(e.text));
                } else if (e.type === 'content') {
                  // a blank line between the (dimmed) reasoning and the answer
                  if (reasoned && answer === '') process.stdout.write('\n\n');
                  answer += e.text;
                  process.stdout.write(e.text);
                }
              }
            };
            for await (const delta of s) show(parser.push(delta));
            show(parser.finish());
            process.stdout.write('\n');
            session.commit(messages[messages.length - 1]!, answer);
          } catch (e) {
            process.stdout.write('\n');
            if (isQvlError(e, 'ABORTED')) process.stderr.write('(stopped)\n');
            else {
              reportError(e);
              process.exitCode = 0;
              session.attachments = [];
            }
          } finally {
            current = undefined;
          }
        }
        rl.prompt();
      }
    } finally {
      rl.close();
      await model.close();
    }
  });
}
