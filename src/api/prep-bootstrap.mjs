// Worker threads do not inherit the host's TypeScript loader: register tsx here, then load the worker.
import { register } from 'tsx/esm/api';

register();
await import('./prep-main.ts');
