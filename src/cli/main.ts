import { Command, CommanderError } from 'commander'
import { exitCodeFor, isUserError } from './exit-codes.js'
import { VERSION } from '../version.js'
import { registerDaemon } from './commands/daemon.js'
import { registerId } from './commands/id.js'
import { registerStatus } from './commands/status.js'
import { registerPeers } from './commands/peers.js'
import { registerPing } from './commands/ping.js'
import { registerConnect } from './commands/connect.js'
import { registerChat } from './commands/chat.js'
import { registerModels } from './commands/models.js'
import { registerProviders } from './commands/providers.js'
import { registerSwarmKey } from './commands/swarm-key.js'
import { registerBalance, registerLedger } from './commands/ledger.js'

export function buildProgram (): Command {
  const program = new Command('krill')
    .description('peer-to-peer inference network for Ollama models')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
  registerDaemon(program)
  registerId(program)
  registerStatus(program)
  registerPeers(program)
  registerModels(program)
  registerProviders(program)
  registerPing(program)
  registerConnect(program)
  registerChat(program)
  registerSwarmKey(program)
  registerLedger(program)
  registerBalance(program)
  for (const command of program.commands) command.exitOverride()
  return program
}

/** Runs the CLI; exit codes (exit-codes.ts): 0 ok, 1 failure, 2 bad usage, 130 interrupted. */
export async function main (argv: string[]): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
  } catch (err: any) {
    process.exitCode = exitCodeFor(err)
    // commander has printed its own message
    if (err instanceof CommanderError) return
    process.stderr.write(`krill: ${err?.message ?? err}\n`)
    if (!isUserError(err) && process.env.KRILL_LOG === 'debug') process.stderr.write(`${err?.stack}\n`)
  }
}
