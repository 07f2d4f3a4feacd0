/** Model resolution: local folder, Hugging Face cache, or a resumable download from HF or ModelScope. */
export { resolveModel, parseModelId, type DownloadProgress, type ModelSourceName, type ResolveModelOptions, type ResolvedModel } from './resolve-model.ts';
export { hfHubCacheDir, modelscopeCacheDir, repoFolderName, RepoCache } from './cache-layout.ts';
export { isCompleteModelDir, isModelFile } from './model-files.ts';
export { hashFile, normalizeEtag } from './hashes.ts';
