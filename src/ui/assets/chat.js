// The chat box: a conversation streamed through this daemon's OpenAI-compatible
// API (POST /v1/chat/completions, SSE), routed to whichever node serves the model.
import { getJson, streamChat } from './api.js'
import { formatMs, shortId } from './graph.js'

function bubble (role, text) {
  const div = document.createElement('div')
  div.className = `msg ${role}`
  const span = document.createElement('span')
  span.className = 'text'
  span.textContent = text
  div.append(span)
  return div
}

/** the newest finished request's end time, to tell ours from earlier ones */
async function newestRecent () {
  const answer = await getJson('/krill/v1/requests').catch(() => null)
  return answer?.recent?.[0]?.at ?? 0
}

/** who served our chat, from the request log (for daemons that send no x-krill-provider) */
async function servedBy (model, after) {
  for (let i = 0; i < 10; i++) {
    const answer = await getJson('/krill/v1/requests').catch(() => null)
    const mine = answer?.recent?.find(r => r.at > after && r.model === model)
    if (mine != null) return mine
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  return null
}

export function setupChat ({ form, select, input, log, send, clear, meta, selfId }) {
  let messages = []
  let running = null

  const scroll = () => { log.scrollTop = log.scrollHeight }

  const describe = (peerId) => {
    if (peerId == null || peerId === '') return 'the swarm'
    if (peerId === 'local' || peerId === selfId()) return 'this node'
    return shortId(peerId)
  }

  const submit = async () => {
    const text = input.value.trim()
    const model = select.value
    if (text === '' || model === '' || running != null) return
    input.value = ''
    messages.push({ role: 'user', content: text })
    log.append(bubble('user', text))
    const answer = bubble('assistant streaming', '')
    log.append(answer)
    scroll()
    send.disabled = true
    meta.textContent = `asking ${model}…`
    running = new AbortController()
    const before = await newestRecent()
    try {
      const result = await streamChat({
        model,
        messages,
        signal: running.signal,
        onDelta: piece => { answer.firstChild.textContent += piece; scroll() }
      })
      messages.push({ role: 'assistant', content: result.text })
      answer.classList.remove('streaming')
      const tokens = result.usage?.completion_tokens ?? null
      const genMs = result.firstAt != null ? result.ended - result.firstAt : null
      const rate = tokens != null && tokens > 1 && genMs != null && genMs > 0 ? (tokens - 1) / (genMs / 1000) : null
      let provider = result.provider
      if (provider == null) provider = (await servedBy(model, before))?.peerId ?? null
      const whoLine = document.createElement('span')
      whoLine.className = 'who'
      whoLine.dataset.provider = provider ?? ''
      whoLine.textContent = [
        `${model} on ${describe(provider)}`,
        `first token ${formatMs(result.ttftMs)}`,
        rate != null ? `${rate.toFixed(1)} tokens/s` : null,
        tokens != null ? `${tokens} tokens` : null
      ].filter(Boolean).join(' · ')
      answer.append(whoLine)
      meta.textContent = ''
    } catch (err) {
      answer.remove()
      messages.pop()
      log.append(bubble('error', String(err?.message ?? err)))
      meta.textContent = ''
    } finally {
      running = null
      send.disabled = false
      scroll()
      input.focus()
    }
  }

  form.addEventListener('submit', event => { event.preventDefault(); void submit() })
  input.addEventListener('keydown', event => {
    if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); void submit() }
  })
  clear.addEventListener('click', () => {
    running?.abort()
    messages = []
    log.replaceChildren()
    meta.textContent = ''
  })

  return {
    setModels (names) {
      const current = select.value
      const have = [...select.options].map(o => o.value)
      if (have.length === names.length && have.every((n, i) => n === names[i])) return
      select.replaceChildren(...names.map(name => new Option(name, name)))
      if (names.length === 0) select.append(new Option('no models in reach', ''))
      if (names.includes(current)) select.value = current
      send.disabled = names.length === 0 || running != null
    }
  }
}
