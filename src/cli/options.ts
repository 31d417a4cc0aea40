import type { Command } from 'commander'

/** commander accumulator for repeatable options */
export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/**
 * Only the options the user actually typed: defaults must not override the
 * environment or krill.json (flags > env > file > defaults).
 */
export function cliOptions (command: Command): Record<string, any> {
  const all = command.optsWithGlobals()
  const out: Record<string, any> = {}
  for (const [key, value] of Object.entries(all)) {
    const source = command.getOptionValueSourceWithGlobals(key)
    if (source === 'cli') out[key] = value
  }
  return out
}
