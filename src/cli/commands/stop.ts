import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { DaemonUnreachableError } from '../../errors.js'
import { CliError } from '../cli-error.js'
import { httpCall, HttpUnreachableError } from '../http.js'
import { apiBase, getJson } from '../api-client.js'
import { printJson } from '../output.js'
import { cliOptions } from '../options.js'
import { defaultDataDir } from '../../node/defaults.js'
import { processAlive, readRunFile } from '../run-file.js'
import { clientOptions } from './common.js'

export interface StopAnswer {
  stopped: true
  peerId: string
  api: string
}

/** true once nothing answers at `base` any more */
async function gone (base: string): Promise<boolean> {
  try {
    (await httpCall(`${base}/krill/v1/status`, { signal: AbortSignal.timeout(1_000) })).cancel()
    return false
  } catch (err: any) {
    return err instanceof HttpUnreachableError
  }
}

export function registerStop (program: Command): void {
  clientOptions(program.command('stop'))
    .description('stop the running daemon (as SIGTERM does: in-flight answers finish or are cancelled) and wait until it is gone')
    .option('--data-dir <dir>', "stop the daemon of this data directory (found through <dir>/daemon.json)")
    .option('--timeout <seconds>', 'how long to wait for it to exit', '30')
    .action(async (_opts, command: Command) => {
      const opts = cliOptions(command)
      const dataDir: string = opts.dataDir ?? defaultDataDir()
      const found = readRunFile(dataDir)
      const run = found != null && processAlive(found.pid) ? found : undefined
      const named = opts.api ?? (process.env.KRILL_API !== '' ? process.env.KRILL_API : undefined)
      if (opts.dataDir != null && named == null && run == null) {
        throw new DaemonUnreachableError(`no daemon is running for ${dataDir}`, { hint: 'nothing to stop (`krill status` asks the default API address)' })
      }
      // --api names the daemon; else the one the data dir's run file names; else the default address
      const base = named == null && run != null ? run.api : apiBase(opts.api)
      const pid = run?.api === base ? run.pid : undefined
      const answer = await getJson<{ peerId: string }>(base, '/krill/v1/shutdown', { method: 'POST' })
      const timeoutS = Number(command.opts().timeout ?? 30)
      const deadline = Date.now() + (Number.isFinite(timeoutS) && timeoutS > 0 ? timeoutS : 30) * 1000
      // gone = its API is closed, and (when we know its pid) its process has exited
      while (!(await gone(base) && (pid == null || !processAlive(pid)))) {
        if (Date.now() > deadline) throw new CliError('stop_timeout', `the daemon at ${base} (${answer.peerId}) is still running after ${timeoutS} s`, { hint: 'it is finishing in-flight answers; try again, or send it SIGKILL' })
        await sleep(100)
      }
      const out: StopAnswer = { stopped: true, peerId: answer.peerId, api: base }
      if (opts.json === true) printJson(out)
      else process.stdout.write(`stopped ${answer.peerId} (API ${base})\n`)
    })
}
