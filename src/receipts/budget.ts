/**
 * Consumer-side budgets (krill.json `budget`): how many tokens peers may serve this
 * node per UTC day, counted from its own ledger (receipts, and the usage of
 * unreceipted answers), and the max tokens of a request that sets none. The local
 * Ollama never counts.
 */
import { KrillError } from '../errors.js'

export interface BudgetConfig {
  /** prompt + completion tokens peers may serve us per UTC day; unset: no cap */
  tokensPerDay?: number
  /** num_predict for requests to peers that set no max_tokens / num_predict; unset: none */
  defaultMaxTokens?: number
}

/** The 429 for a request past the daily cap, or undefined while under it. */
export function budgetRefusal (config: BudgetConfig, today: { tokens: number, resetsAt: Date }): KrillError | undefined {
  const cap = config.tokensPerDay
  if (cap == null || today.tokens < cap) return undefined
  return new KrillError('RATE_LIMITED',
    `daily token budget used up: peers served this node ${today.tokens} tokens today, the cap is ${cap} (budget.tokensPerDay in krill.json); it resets at ${today.resetsAt.toISOString()} (next UTC midnight). Models on the local Ollama still answer`)
}
