import type { Command } from 'commander'

/** The options every client command shares: where the daemon is, and JSON output. */
export function clientOptions (command: Command): Command {
  return command
    .option('--api <host:port>', 'daemon API address (env KRILL_API; default 127.0.0.1:11435)')
    .option('--json', 'machine-readable output (the same data as the table)')
}
