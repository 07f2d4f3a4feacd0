import { readFileSync } from 'node:fs';

/** Resident KiB of the mappings of `file` in this process (/proc/self/smaps), or null off Linux. */
export function residentKiB(file: string): number | null {
  let smaps: string;
  try {
    smaps = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return null;
  }
  let total = 0;
  let found = false;
  for (const part of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    if (!part.split('\n')[0].endsWith(file)) continue;
    found = true;
    total += Number(/\nRss:\s+(\d+) kB/.exec(part)?.[1] ?? 0);
  }
  return found ? total : null;
}
