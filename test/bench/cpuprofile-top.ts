/**
 * The top frames of a V8 CPU profile (node --cpu-prof, or BENCH_CPU_PROF=DIR for the
 * bench's daemons), by self time and by package — what the benchmarks' findings in
 * docs/benchmarks.md were read from (clinic is not installed here).
 *
 *   node dist-test/test/bench/cpuprofile-top.js FILE.cpuprofile [frames=40]
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
}

interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** Self time (ms) per frame and per package; '(idle)' is time the event loop waited. */
export function topFrames (profile: Profile): { totalMs: number, idleMs: number, frames: Array<[string, number]>, packages: Array<[string, number]> } {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const frames = new Map<string, number>()
  const packages = new Map<string, number>()
  let total = 0
  let idle = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i])
    if (node == null) continue
    const ms = (profile.timeDeltas[i] ?? 0) / 1000
    total += ms
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') idle += ms
    const file = url.replace(/^file:\/\/.*?\/(node_modules|dist-test|dist)\//, '$1/')
    const frame = `${functionName !== '' ? functionName : '(anonymous)'} ${file}:${lineNumber + 1}`
    frames.set(frame, (frames.get(frame) ?? 0) + ms)
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ??
      (file.startsWith('dist') ? file.split('/').slice(0, 3).join('/') : file === '' ? functionName : file.split('/').slice(0, 2).join('/'))
    packages.set(pkg, (packages.get(pkg) ?? 0) + ms)
  }
  const sort = (m: Map<string, number>): Array<[string, number]> => [...m].sort((a, b) => b[1] - a[1])
  return { totalMs: total, idleMs: idle, frames: sort(frames), packages: sort(packages) }
}

function main (): void {
  const [file, count] = process.argv.slice(2)
  if (file == null) {
    process.stderr.write('usage: node dist-test/test/bench/cpuprofile-top.js FILE.cpuprofile [frames=40]\n')
    process.exit(2)
  }
  const top = topFrames(JSON.parse(readFileSync(file, 'utf8')) as Profile)
  const n = Number(count ?? 40)
  const line = ([name, ms]: [string, number]): string => `${ms.toFixed(1).padStart(9)} ms  ${name}`
  process.stdout.write(`${file}: ${top.totalMs.toFixed(0)} ms sampled, ${(top.totalMs - top.idleMs).toFixed(0)} ms busy\n\nby package:\n`)
  process.stdout.write(top.packages.slice(0, 20).map(line).join('\n') + '\n\nby frame (self time):\n')
  process.stdout.write(top.frames.slice(0, n).map(line).join('\n') + '\n')
}

if (process.argv[1]?.endsWith('cpuprofile-top.js') === true) main()
