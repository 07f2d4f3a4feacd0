import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (where package.json and the bundled demo model live). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The small trained Qwen3-VL shipped in the repository, used when no --model is given. */
export const DEMO_MODEL_DIR = path.join(PROJECT_ROOT, 'models', 'demo');
