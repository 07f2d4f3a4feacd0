import cliProgress from 'cli-progress';
import type { DownloadProgress } from '../hub/index.ts';

const MB = 1024 * 1024;

/** A download progress bar on stderr (only when it is a terminal; nothing is printed otherwise). */
export class DownloadBar {
  private bar?: cliProgress.SingleBar;
  private readonly enabled: boolean;

  constructor(enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }

  update(p: DownloadProgress): void {
    if (!this.enabled) return;
    const total = Math.max(1, p.bytesTotal);
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: 'downloading {bar} {percentage}% | {doneMb}/{totalMb} MB | file {files} | {file}',
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(total, 0, this.payload(p));
    }
    this.bar.setTotal(total);
    this.bar.update(p.bytesDone, this.payload(p));
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }

  private payload(p: DownloadProgress) {
    return {
      doneMb: (p.bytesDone / MB).toFixed(1),
      totalMb: (p.bytesTotal / MB).toFixed(1),
      files: `${Math.min(p.filesDone + 1, p.filesTotal)}/${p.filesTotal}`,
      file: p.file,
    };
  }
}
