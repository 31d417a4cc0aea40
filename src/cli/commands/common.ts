import type { Command } from 'commander'

/** The options every client command shares: where the daemon is, and JSON output. */
export function clientOptions (command: Command): Command {
  return command
    .option('--api <host:port>', 'daemon API address (env KRILL_API; default 127.0.0.1:11435)')
    .option('--json', 'machine-readable output (the same data as the table)')
}

/** tables fit 100 columns; --wide shows every id and address whole */
export function wideOption (command: Command): Command {
  return command.option('--wide', 'do not shorten ids and addresses to fit 100 columns')
}

export function watchOption (command: Command): Command {
  return command.option('--watch', 'refresh every 2 s until Ctrl-C (plain lines when stdout is not a terminal)')
}
