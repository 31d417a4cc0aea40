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
    reporters: ['default']
  }
})
