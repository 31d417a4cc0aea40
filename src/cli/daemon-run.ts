import { DatastoreLockedError } from '../errors.js'
import { liveDaemon, removeRunFile, writeRunFile } from './run-file.js'

/** A second daemon on a data dir another one holds: say who holds it, before touching anything. */
export async function refuseHeldDataDir (dataDir: string): Promise<void> {
  const live = await liveDaemon(dataDir)
  if (live == null) return
  const who = `pid ${live.info.pid}, API ${live.info.api}, peer ${live.info.peerId}`
  throw new DatastoreLockedError(`another krill daemon holds the data dir ${dataDir} (${who})`, {
    hint: `stop it with \`krill stop --data-dir ${dataDir}\`, or give this one another --data-dir`
  })
}

/** daemon.json for the daemon of this process: written at the ready line, removed at the end */
export function runFileWriter (dataDir: string): { ready: (event: { peerId: string, api: string }) => void, remove: () => void } {
  return {
    ready: (event) => {
      try {
        writeRunFile(dataDir, { pid: process.pid, peerId: event.peerId, api: event.api, startedAt: new Date().toISOString() })
      } catch { /* a read-only data dir still runs; `krill stop --data-dir` will not find it */ }
    },
    remove: () => {
      try { removeRunFile(dataDir, process.pid) } catch { /* gone already */ }
    }
  }
}
