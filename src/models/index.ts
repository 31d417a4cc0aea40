/** Model identity: names and digests, one set of rules for every part of krill. */
export {
  DEFAULT_TAG,
  MAX_MODEL_NAME_CHARS,
  canonicalModelName,
  displayModelName,
  isValidModelName,
  isValidParts,
  modelId,
  modelNameProblem,
  parseModelName,
  parseModelNameBare,
  sameModel,
  type ModelName
} from './name.js'
export { isValidDigest, normalizeDigest, sameDigest } from './digest.js'
