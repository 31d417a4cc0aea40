import type { ModelsAnswer } from '../api/control.js'
import { ModelNotServedError } from '../errors.js'
import { getJson } from './api-client.js'
import { didYouMean, suggestModels } from './suggest.js'

/** the names in the daemon's catalog (peers' and its own); [] when it cannot say */
export async function knownModels (base: string): Promise<string[]> {
  try {
    const answer = await getJson<ModelsAnswer>(base, '/krill/v1/models', { signal: AbortSignal.timeout(3_000) })
    return [...answer.models.filter(m => m.providers > 0 || m.servedHere).map(m => m.name), ...answer.local.map(m => m.name)]
  } catch {
    return []
  }
}

/** "model X is not served by anyone", with the names the user probably meant */
export async function unknownModel (base: string, model: string): Promise<ModelNotServedError> {
  const suggestion = didYouMean(suggestModels(model, await knownModels(base)))
  return new ModelNotServedError(`model "${model}" is not served by anyone in the swarm`, {
    hint: suggestion != null ? `${suggestion} (see \`krill models\`)` : 'see `krill models`'
  })
}
