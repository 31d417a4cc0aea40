import { defineConfig } from 'vitest/config'

// Integration tests start real libp2p swarms and processes: give them room and
// keep files from competing for the 2 cores of a CI machine too hard.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    // in-process daemons print warnings and errors only (KRILL_LOG=info to see all):
    // hundreds of start-up lines buried the failures. Spawned daemons set their own.
    env: { KRILL_LOG: process.env.KRILL_LOG ?? 'warn' }
  }
})
