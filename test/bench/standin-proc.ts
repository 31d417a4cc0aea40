/**
 * The Ollama stand-in in a process of its own, driven over the IPC channel, so that
 * the model's side of a benchmark runs on its own event loop (as a real Ollama
 * would) instead of competing with the client that measures it.
 *
 * Messages in:  {type: 'knobs', knobs: Partial<StandinKnobs>} | {type: 'addModel', name}
 *               | {type: 'stats'} | {type: 'reset'}
 * Messages out: {type: 'ready', url, pid} once listening; {type: 'ok', id} / {type: 'stats', ...}
 * answering messages that carry an `id`.
 *
 * Started by test/bench/procs.ts; exits on SIGTERM/SIGINT or when the parent goes away.
 */
import { OllamaStandin, type StandinKnobs } from '../fixtures/ollama-standin.js'

interface Message {
  id?: number
  type: 'knobs' | 'addModel' | 'stats' | 'reset'
  knobs?: Partial<StandinKnobs>
  name?: string
}

async function main (): Promise<void> {
  const models = (process.env.STANDIN_MODELS ?? 'llama3.2:1b').split(',').map(name => ({ name }))
  const knobs = JSON.parse(process.env.STANDIN_KNOBS ?? '{}') as Partial<StandinKnobs>
  const standin = await OllamaStandin.start({ models, knobs })
  const send = (msg: unknown): void => { process.send?.(msg) }

  process.on('message', (raw: unknown) => {
    const msg = raw as Message
    switch (msg.type) {
      case 'knobs':
        standin.knobs = { ...standin.knobs, ...msg.knobs }
        send({ type: 'ok', id: msg.id })
        break
      case 'addModel':
        standin.addModel({ name: msg.name ?? 'unnamed:1b' })
        send({ type: 'ok', id: msg.id })
        break
      case 'reset':
        // the stand-in records every request; a long benchmark must not grow it forever
        standin.requests = []
        standin.httpLog = []
        send({ type: 'ok', id: msg.id })
        break
      case 'stats':
        send({
          type: 'stats',
          id: msg.id,
          requests: standin.requests.length,
          completed: standin.requests.filter(r => r.completed).length,
          aborted: standin.requests.filter(r => r.aborted).length,
          tokensSent: standin.requests.reduce((n, r) => n + r.tokensSent, 0)
        })
        break
    }
  })
  const stop = (): void => { void standin.stop().finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // the parent died without stopping us: do not linger
  process.on('disconnect', stop)
  send({ type: 'ready', url: standin.url, pid: process.pid })
}

main().catch((err: unknown) => {
  process.stderr.write(`standin-proc: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(2)
})
