import type { Command } from 'commander'
import { BadRequestError, InterruptedError, ModelNotServedError, RequestFailedError, UsageError } from '../../errors.js'
import { apiBase, callApi, errorMessage } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { clientOptions } from './common.js'

/** Exit code of a program stopped by SIGINT (128 + 2), as shells report it. */

interface ChunkUsage { prompt_tokens: number, completion_tokens: number, total_tokens: number }

interface Chunk {
  model?: string
  choices?: Array<{ delta?: { content?: string | null, reasoning?: string | null }, finish_reason?: string | null }>
  usage?: ChunkUsage | null
  error?: { message?: string }
}

export interface ChatAnswer {
  model: string
  content: string
  finishReason: string | null
  usage: ChunkUsage | null
}

async function readStdin (): Promise<string> {
  let text = ''
  process.stdin.setEncoding('utf8')
  for await (const chunk of process.stdin) text += chunk as string
  return text
}

/** Splits a Server-Sent Events body into the payloads of its `data:` lines. */
export async function * sseData (body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = ''
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    buffer += text
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = event.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n')
      if (data !== '') yield data
    }
  }
}

export function registerChat (program: Command): void {
  clientOptions(program.command('chat'))
    .description('stream an answer to stdout (prompt from stdin when omitted)')
    .requiredOption('-m, --model <model>', 'model to ask, as `krill models` lists it')
    .argument('[prompt...]', 'the question; read from stdin when omitted')
    .action(async (words: string[], _opts, command: Command) => {
      const opts = cliOptions(command)
      const model: string = opts.model
      const prompt = words.length > 0 ? words.join(' ') : await readStdin()
      if (prompt.trim() === '') throw new UsageError('no prompt: pass it as arguments or on stdin (echo "hi" | krill chat -m MODEL)')
      const json = opts.json === true

      // Ctrl-C aborts the HTTP request: the daemon sees the client go away and
      // cancels the chat stream, which makes the provider abort its Ollama request.
      const abort = new AbortController()
      const onSigint = (): void => { abort.abort() }
      process.once('SIGINT', onSigint)
      const base = apiBase(opts.api)
      try {
        const res = await callApi(base, '/v1/chat/completions', {
          body: { model, messages: [{ role: 'user', content: prompt }], stream: true, stream_options: { include_usage: true } },
          signal: abort.signal
        })
        if (!res.ok || res.body == null) {
          const text = await res.text()
          let body: unknown
          try { body = JSON.parse(text) } catch { body = text }
          if (res.status === 404) throw new ModelNotServedError(`model "${model}" is not served by anyone in the swarm — see \`krill models\``)
          throw res.status === 400 ? new BadRequestError(errorMessage(body, `${res.status} ${res.statusText}`)) : new RequestFailedError(errorMessage(body, `${res.status} ${res.statusText}`))
        }
        const answer: ChatAnswer = { model, content: '', finishReason: null, usage: null }
        for await (const data of sseData(res.body)) {
          if (data === '[DONE]') break
          const chunk = JSON.parse(data) as Chunk
          // after the headers an error travels in the stream, as OpenAI does
          if (chunk.error != null) throw new RequestFailedError(chunk.error.message ?? 'the answer failed')
          if (chunk.model != null) answer.model = chunk.model
          if (chunk.usage != null) answer.usage = chunk.usage
          for (const choice of chunk.choices ?? []) {
            const content = choice.delta?.content
            if (content != null && content !== '') {
              answer.content += content
              if (!json) process.stdout.write(content)
            }
            if (choice.finish_reason != null) answer.finishReason = choice.finish_reason
          }
        }
        if (json) printJson(answer)
        // a prompt back on a fresh line for people; pipes get exactly the answer
        else if (process.stdout.isTTY && answer.content !== '' && !answer.content.endsWith('\n')) process.stdout.write('\n')
      } catch (err: any) {
        if (abort.signal.aborted) {
          if (!json && process.stdout.isTTY) process.stdout.write('\n')
          // main() prints "krill: interrupted" and exits 130
          throw new InterruptedError('interrupted')
        }
        throw err
      } finally {
        process.off('SIGINT', onSigint)
      }
    })
}
