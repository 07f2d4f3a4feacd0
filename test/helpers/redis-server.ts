/**
 * A real redis-server for the batch tests: started on a free loopback port with its own data
 * folder (append-only file on, fsync on every write, so a restart keeps every job), stopped or
 * restarted on demand. Tests skip with a reason when redis-server is not installed, except under
 * CI=true, where a missing server is a failure (CI installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function redisServerPath(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : undefined;
}

/** `skip` for node:test: a reason when the tests cannot run here, false when they can. Throws under CI. */
export function redisSkip(): string | false {
  if (redisServerPath()) return false;
  if (process.env.CI === 'true') throw new Error('redis-server is not installed, and CI=true requires it (.ci/run installs the redis-server package)');
  return 'redis-server is not installed (apt-get install redis-server); CI installs it and runs these tests';
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  port: number;
  /** SIGTERM (the append-only file is flushed), then start again on the same port and folder */
  restart(downMs?: number): Promise<void>;
  /** stop without a restart; the URL refuses connections until `start` */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** stop and delete the data folder */
  close(): Promise<void>;
}

async function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    sock.setTimeout(1000, () => (sock.destroy(), resolve(false)));
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      out += d.toString();
      if (out.includes('\r\n')) {
        sock.destroy();
        resolve(out.startsWith('+PONG'));
      }
    });
  });
}

export async function startRedisServer(): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server is not installed');
  const dir = mkdtempSync(path.join(tmpdir(), 'qvl-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let log = '';

  const start = async () => {
    const p = spawn(
      bin,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--protected-mode', 'no', '--logfile', ''],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = p;
    p.stdout!.on('data', (d) => (log = (log + d.toString()).slice(-8000)));
    p.stderr!.on('data', (d) => (log = (log + d.toString()).slice(-8000)));
    const deadline = Date.now() + 15_000;
    while (!(await ping(port))) {
      if (p.exitCode !== null) throw new Error(`redis-server exited (code ${p.exitCode})\n${log}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async () => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  };

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop,
    restart: async (downMs = 0) => {
      await stop();
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
