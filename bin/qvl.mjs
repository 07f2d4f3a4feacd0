#!/usr/bin/env node
// qvl from a clone of the repository: runs the TypeScript sources through tsx (a dev dependency),
// so an edit takes effect without a build. The installed package's `qvl` is dist/cli/main.js.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
