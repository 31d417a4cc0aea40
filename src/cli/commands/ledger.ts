import type { Command } from 'commander'
import type { BalanceAnswer, LedgerAnswer, LedgerEntryAnswer, TokenCountsAnswer } from '../../api/ledger-routes.js'
import { UsageError } from '../../errors.js'
import { apiBase, getJson } from '../api-client.js'
import { fitWidth, formatTable, peerCell, printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions, wideOption } from './common.js'

export function renderLedger (entries: LedgerEntryAnswer[], opts: { wide?: boolean } = {}): string {
  if (entries.length === 0) return 'no receipts yet\n'
  const wide = opts.wide === true
  const rows = entries.map(e => [
    e.recordedAt.replace('T', ' ').slice(0, 19),
    e.role === 'provider' ? 'served' : 'used',
    peerCell(e.peer, wide),
    e.model,
    `${e.promptTokens}+${e.completionTokens}`,
    e.status + (e.reason != null && e.status !== 'signed' ? ` (${e.reason})` : '')
  ])
  // within 100 columns: a long model name or refusal reason gives way (--wide: whole)
  return formatTable(['time (UTC)', 'we', 'peer', 'model', 'tokens', 'receipt'], rows, { width: fitWidth(wide), shrink: [3, 5] })
}

function counts (c: TokenCountsAnswer): string {
  return `${c.total} (${c.prompt} prompt + ${c.completion} completion)`
}

export function renderBalance (b: BalanceAnswer): string {
  const out: string[] = []
  for (const p of b.peers) {
    out.push(`${p.peer}`)
    out.push(`  we served them  ${counts(p.servedThem)} in ${p.requests.servedThem} request(s)`)
    out.push(`  they served us  ${counts(p.servedUs)} in ${p.requests.servedUs} request(s)`)
    out.push(`  net             ${p.net > 0 ? '+' : ''}${p.net}   standing ${p.standing.score.toFixed(2)}`)
    const odd = (['disputed', 'refused', 'unreceipted'] as const).filter(s => p.receipts[s] > 0).map(s => `${p.receipts[s]} ${s}`)
    if (odd.length > 0) out.push(`  receipts        ${p.receipts.signed} signed, ${odd.join(', ')}`)
  }
  if (b.peers.length > 0) out.push('')
  out.push(`total served     ${counts(b.totals.servedThem)}`)
  out.push(`total received   ${counts(b.totals.servedUs)}`)
  out.push(`net              ${b.totals.net > 0 ? '+' : ''}${b.totals.net}`)
  out.push(`today (UTC)      ${b.today.tokens} tokens from peers${b.today.cap != null ? ` of ${b.today.cap} (budget.tokensPerDay); resets ${b.today.resetsAt}` : ''}`)
  return out.join('\n') + '\n'
}

export function registerLedger (program: Command): void {
  wideOption(clientOptions(program.command('ledger')))
    .description('receipts: what this node served and was served, newest first, with signatures (--json)')
    .option('--peer <id>', 'only receipts with this peer')
    .option('--limit <n>', 'at most this many entries (default 20)')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const local = command.opts<{ peer?: string, limit?: string }>()
      const limit = local.limit == null ? 20 : Number(local.limit)
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer, got "${local.limit ?? ''}"`)
      const query = new URLSearchParams({ limit: String(limit), ...(local.peer != null ? { peer: local.peer } : {}) })
      const answer = await getJson<LedgerAnswer>(apiBase(opts.api), `/krill/v1/ledger?${query.toString()}`)
      if (opts.json === true) printJson(answer)
      else process.stdout.write(renderLedger(answer.entries, { wide: opts.wide }))
    })
}

export function registerBalance (program: Command): void {
  clientOptions(program.command('balance'))
    .description('per peer: tokens we served them, tokens they served us, net; and our totals')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const answer = await getJson<BalanceAnswer>(apiBase(opts.api), '/krill/v1/balance')
      if (opts.json === true) printJson(answer)
      else process.stdout.write(renderBalance(answer))
    })
}
