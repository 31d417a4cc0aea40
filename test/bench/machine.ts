/** What the numbers were measured on: printed with every report, since they mean little without it. */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { VERSION } from '../../src/version.js'

export interface MachineInfo {
  cpuModel: string
  /** logical CPUs this process may use */
  cores: number
  memoryMb: number
  os: string
  node: string
  krill: string
  /** libp2p's version from its package.json (what the wire figures depend on most) */
  libp2p: string
  date: string
  /**
   * 1-minute load average when the run started and when it ended: other work on the
   * machine (a test suite, a build) shows in every figure
   */
  load: { start: number, end: number }
}

function libp2pVersion (): string {
  try {
    const url = new URL('../../../node_modules/libp2p/package.json', import.meta.url)
    return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

export function machineInfo (loadAtStart: number): MachineInfo {
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryMb: Math.round(os.totalmem() / 1024 / 1024),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    krill: VERSION,
    libp2p: libp2pVersion(),
    date: new Date().toISOString(),
    load: { start: loadAtStart, end: os.loadavg()[0] }
  }
}
