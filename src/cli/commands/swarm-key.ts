import type { Command } from 'commander'

export function registerSwarmKey (program: Command): void {
  const swarmKey = program.command('swarm-key').description('manage pre-shared keys for private swarms')
  swarmKey.command('new')
    .description('print a new swarm key; give the same file to every member: krill swarm-key new > swarm.key')
    .option('--json', 'print {"key": "..."} instead of the key file')
    .action(async (opts: { json?: boolean }) => {
      const { generateKey } = await import('@libp2p/pnet')
      const key = new Uint8Array(95)
      generateKey(key)
      const text = new TextDecoder().decode(key)
      process.stdout.write(opts.json === true ? JSON.stringify({ key: text }) + '\n' : text)
    })
}
