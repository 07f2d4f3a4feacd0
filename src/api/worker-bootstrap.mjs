// Worker threads do not inherit the host's module loader hooks. Run from src/ (development), the
// worker's modules are TypeScript, so tsx (a dev dependency) is registered first; in dist/ this
// file is compiled next to compiled JavaScript, and tsc rewrites the import below to `.js`.
import { existsSync } from 'node:fs';

if (existsSync(new URL('./worker-main.ts', import.meta.url))) (await import('tsx/esm/api')).register();
await import('./worker-main.ts');
