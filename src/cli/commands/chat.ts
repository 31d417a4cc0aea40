import type { Command } from 'commander'
import { CliError } from '../cli-error.js'
import { apiBase, callApi, httpError } from '../api-client.js'
import { onInterrupt } from '../interrupt.js'
import { unknownModel } from '../known-models.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

/** who answered: a peer id, or "local" for this node's own Ollama (set by the daemon) */
export const PROVIDER_HEADER = 'x-krill-provider'
/** route to this peer only */
export const PEER_HEADER = 'x-krill-peer'

interface ChunkUsage { prompt_tokens: number, completion_tokens: number, total_tokens: number }

interface Chunk {
  model?: string
  choices?: Array<{ delta?: { content?: string | null, reasoning?: string | null }, finish_reason?: string | null }>
  usage?: ChunkUsage | null
  error?: { message?: string, code?: string }
}

export interface ChatAnswer {
  model: string
  content: string
  finishReason: string | null
  usage: ChunkUsage | null
  /** the peer id that answered, "local" for this node's Ollama; null when the daemon does not say */
  provider: string | null
}

async function readStdin (): Promise<string> {
  let text = ''
  process.stdin.setEncoding('utf8')
  for await (const chunk of process.stdin) text += chunk as string
  return text
}

/** Splits a Server-Sent Events body into the payloads of its `data:` lines. */
export async function * sseData (body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true })
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = event.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n')
      if (data !== '') yield data
    }
  }
}

/** "this node (its own Ollama)" or the peer id */
export function describeProvider (provider: string): string {
  return provider === 'local' ? 'this node (its own Ollama)' : provider
}

export function registerChat (program: Command): void {
  clientOptions(program.command('chat'))
    .description('stream an answer to stdout (prompt from stdin when omitted); says on stderr who answered')
    .requiredOption('-m, --model <model>', 'model to ask, as `krill models` lists it')
    .option('--peer <peer-id>', 'ask this peer only (no failover to others)')
    .argument('[prompt...]', 'the question; read from stdin when omitted')
    .action(async (words: string[], _opts, command: Command) => {
      const opts = cliOptions(command)
      const model: string = opts.model
      const prompt = words.length > 0 ? words.join(' ') : await readStdin()
      if (prompt.trim() === '') throw new CliError('no_prompt', 'no prompt', { hint: 'pass it as arguments or on stdin (echo "hi" | krill chat -m MODEL)', usage: true })
      const json = opts.json === true
      const base = apiBase(opts.api)
      // Ctrl-C exits 130 (interrupt.ts); leaving closes the request, the daemon cancels
      // the chat stream, and the provider aborts its Ollama request
      let midLine = false
      const undo = onInterrupt(() => { if (midLine && !json && process.stdout.isTTY) process.stdout.write('\n') })
      try {
        const res = await callApi(base, '/v1/chat/completions', {
          body: { model, messages: [{ role: 'user', content: prompt }], stream: true, stream_options: { include_usage: true } },
          headers: opts.peer != null ? { [PEER_HEADER]: opts.peer } : {},
          signal: AbortSignal.timeout(24 * 3600_000)
        })
        if (res.status === 404 && opts.peer == null) {
          res.cancel()
          throw await unknownModel(base, model)
        }
        if (!res.ok) throw await httpError(res)
        const answer: ChatAnswer = { model, content: '', finishReason: null, usage: null, provider: res.header(PROVIDER_HEADER) ?? null }
        for await (const data of sseData(res.body)) {
          if (data === '[DONE]') break
          const chunk = JSON.parse(data) as Chunk
          // after the headers an error travels in the stream, as OpenAI does
          if (chunk.error != null) throw new CliError(chunk.error.code ?? 'answer_failed', chunk.error.message ?? 'the answer failed')
          if (chunk.model != null) answer.model = chunk.model
          if (chunk.usage != null) answer.usage = chunk.usage
          for (const choice of chunk.choices ?? []) {
            const content = choice.delta?.content
            if (content != null && content !== '') {
              answer.content += content
              if (!json) {
                process.stdout.write(content)
                midLine = !content.endsWith('\n')
              }
            }
            if (choice.finish_reason != null) answer.finishReason = choice.finish_reason
          }
        }
        if (json) {
          printJson(answer)
          return
        }
        // a prompt back on a fresh line for people; pipes get exactly the answer
        if (process.stdout.isTTY && midLine) process.stdout.write('\n')
        if (answer.provider != null) process.stderr.write(`answered by ${describeProvider(answer.provider)}\n`)
      } finally {
        undo()
      }
    })
}
