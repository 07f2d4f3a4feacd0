export { evaluate, selectItems, DEFAULT_MAX_NEW_TOKENS, type EvaluateOptions } from './evaluate.ts';
export { formatEvalReport } from './report.ts';
export { loadDataset, parseItem, resolveMedia, type Dataset, type DatasetMeta, type EvalItem } from './dataset.ts';
export { compareWithHf, scoreAnswer, scoreItem, summarize, IOU_CORRECT, NEAR_TIE, type EvalReport, type HfComparison, type ItemResult, type TaskSummary } from './score.ts';
export { answerBoxes, groundingIou, iou, type Box } from './iou.ts';
export { answersMatch, normalizeAnswer } from './normalize.ts';
