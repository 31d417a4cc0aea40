/**
 * `krill` for the benchmarks' daemon processes: the same CLI bin/krill loads, but
 * from the build the bench itself runs (dist-test/), so a bench never measures a
 * stale dist/ next to fresh bench code.
 */
import { main } from '../../src/cli/main.js'

await main(process.argv)
