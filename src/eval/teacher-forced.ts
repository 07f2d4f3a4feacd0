/**
 * Teacher forcing along HF's recorded answer: at every position the model is given HF's tokens so
 * far and asked for its top token. Whole answers are a coarse measure of a numerical change (one
 * flipped box digit changes the rest of the answer, and the item counts once whatever else
 * happened); positions along one fixed path are counted one by one, each against HF's own token.
 */
import { argmax } from '../kernels/ts/argmax.ts';
import { EOS_IDS } from './score.ts';

export interface ForcedAgreement {
  /** positions compared: HF's answer tokens, end-of-sequence included */
  positions: number;
  /** positions where the model's top token was HF's */
  agree: number;
  /** the others (0-based, in order) */
  misses: number[];
}

function sameToken(a: number, b: number): boolean {
  return a === b || (EOS_IDS.has(a) && EOS_IDS.has(b));
}

/**
 * A `logitsProcessor` that checks the model's top token (greedy decoding's `argmax`) against
 * HF's token at each position, records it in `rec`, then leaves only HF's token possible so that
 * decoding follows HF's path.
 */
export function teacherForcing(hfTokenIds: readonly number[], rec: ForcedAgreement): (logits: Float32Array, generated: readonly number[]) => void {
  return (logits, generated) => {
    const pos = generated.length;
    const want = hfTokenIds[pos];
    if (want === undefined) return;
    const top = argmax(logits);
    rec.positions++;
    if (sameToken(top, want)) rec.agree++;
    else rec.misses.push(pos);
    const keep = logits[want];
    logits.fill(-Infinity);
    // a NaN or -Infinity logit would leave nothing to pick: HF's token must stay the greedy choice
    logits[want] = Number.isFinite(keep) ? keep : 0;
  };
}
