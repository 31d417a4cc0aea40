import { Command, CommanderError } from 'commander'
import { VERSION } from '../version.js'
import { exitOnInterrupt } from './interrupt.js'
import { exitCodeFor } from './exit-codes.js'
import { errorJson, reportError } from './report-error.js'

type Register = (program: Command) => void

export interface CommandEntry {
  name: string
  /** the line `krill --help` shows; the drift test holds it equal to the command's description */
  summary: string
  load: () => Promise<Register>
}

/**
 * Every command, loaded only when it runs: `krill status` must not pay for the
 * daemon's module graph (libp2p, fastify, zod). A command's module imports only
 * what the command needs; heavy parts it needs on some paths it imports there.
 */
export const COMMANDS: CommandEntry[] = [
  { name: 'daemon', summary: 'run a node: serve local models, route requests, expose the HTTP API', load: async () => (await import('./commands/daemon.js')).registerDaemon },
  { name: 'id', summary: "print a node's peer id and addresses: the live ones when its daemon runs (creates the identity if missing)", load: async () => (await import('./commands/id.js')).registerId },
  { name: 'status', summary: 'node health: peer id, uptime, connections, Ollama, served models, active requests, tokens served and received', load: async () => (await import('./commands/status.js')).registerStatus },
  { name: 'peers', summary: 'connected peers: id, address, direct or relayed, latency, agent version, models', load: async () => (await import('./commands/peers.js')).registerPeers },
  { name: 'models', summary: "the network's model catalog: model, digest, number of providers, best latency", load: async () => (await import('./commands/models.js')).registerModels },
  { name: 'providers', summary: 'who serves a model, with load and latency', load: async () => (await import('./commands/providers.js')).registerProviders },
  { name: 'ping', summary: 'round-trip time to a peer', load: async () => (await import('./commands/ping.js')).registerPing },
  { name: 'connect', summary: 'dial a peer now', load: async () => (await import('./commands/connect.js')).registerConnect },
  { name: 'chat', summary: 'stream an answer to stdout (prompt from stdin when omitted); says on stderr who answered', load: async () => (await import('./commands/chat.js')).registerChat },
  { name: 'ledger', summary: 'receipts: what this node served and was served, newest first, with signatures (--json)', load: async () => (await import('./commands/ledger.js')).registerLedger },
  { name: 'balance', summary: 'per peer: tokens we served them, tokens they served us, net; and our totals', load: async () => (await import('./commands/ledger.js')).registerBalance },
  { name: 'stop', summary: 'stop the running daemon (as SIGTERM does: in-flight answers finish or are cancelled) and wait until it is gone', load: async () => (await import('./commands/stop.js')).registerStop },
  { name: 'swarm-key', summary: 'manage pre-shared keys for private swarms', load: async () => (await import('./commands/swarm-key.js')).registerSwarmKey },
  { name: 'invite', summary: 'print a token that lets one more node join this node\'s private swarm: krill daemon --join TOKEN', load: async () => (await import('./commands/invite.js')).registerInvite },
  { name: 'service', summary: 'run the daemon at login: a systemd user unit (Linux) or a launchd agent (macOS)', load: async () => (await import('./commands/service.js')).registerService },
  { name: 'openclaw', summary: "OpenClaw integration: print the provider block for openclaw.json", load: async () => (await import('./commands/openclaw.js')).registerOpenclaw }
]

/** the command a command line runs ("help status" → "status"); undefined for none */
export function commandName (args: string[]): string | undefined {
  const words = args.filter(a => !a.startsWith('-'))
  if (words[0] === 'help') return words[1]
  return words[0]
}

/**
 * The program with command `only` fully registered and every other command as a
 * one-line stub (enough for `krill --help` and "unknown command" suggestions);
 * `only` undefined: stubs alone (`krill --version`).
 */
export async function programFor (only: string | undefined): Promise<Command> {
  return await build(entry => entry.name === only)
}

/** The program with every command loaded (docs, tests, `krill help`). */
export async function buildProgram (): Promise<Command> {
  return await build(() => true)
}

async function build (load: (entry: CommandEntry) => boolean): Promise<Command> {
  const program = new Command('krill')
    .description('peer-to-peer inference network for Ollama models')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
  for (const entry of COMMANDS) {
    if (load(entry)) (await entry.load())(program)
    else program.command(entry.name).description(entry.summary)
  }
  return program
}

function jsonWanted (args: string[]): boolean {
  const end = args.indexOf('--')
  return (end >= 0 ? args.slice(0, end) : args).includes('--json')
}

/** commander's own errors (unknown option, missing argument) as a JSON line under --json */
function configure (command: Command, json: boolean): void {
  command.exitOverride()
  if (json) {
    command.configureOutput({
      outputError: (str, write) => write(errorJson({ code: 'bad_usage', message: str.replace(/^error: /, '').trim(), hint: 'run the command with --help for its usage' }) + '\n')
    })
    command.showHelpAfterError(false)
  }
  for (const sub of command.commands) configure(sub, json)
}

/** Runs the CLI; exit codes: 0 ok, 1 failure, 2 bad usage, 130 interrupted (Ctrl-C). */
export async function main (argv: string[]): Promise<void> {
  const args = argv.slice(2)
  const json = jsonWanted(args)
  const name = commandName(args)
  // the daemon shuts down cleanly on SIGINT (exit 0); every other command leaves with 130
  if (name !== 'daemon') exitOnInterrupt(json)
  try {
    const program = await programFor(name)
    configure(program, json)
    await program.parseAsync(argv)
  } catch (err: any) {
    if (err instanceof CommanderError) {
      // help and version are successes; everything else commander rejects is usage
      // (commander has printed its message already)
      process.exitCode = exitCodeFor(err)
      return
    }
    process.exitCode = reportError(err, json)
  }
}
