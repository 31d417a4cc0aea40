/**
 * The layout rules of src/ (DESIGN.md §1, ARCHITECTURE.md), checked by
 * dependency-cruiser: `npm run lint:deps`, and inside `npm test`
 * (test/unit/dependencies.test.ts). Folder cycles are checked next to these rules
 * by scripts/check-deps.mjs (dependency-cruiser's rules see modules, not folders).
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'no import cycles between modules',
      from: {},
      to: { circular: true }
    },
    {
      name: 'nobody-imports-the-root',
      severity: 'error',
      comment: 'src/daemon/ is the composition root: only the program entry (cli/commands/daemon.ts) and tests import it',
      from: { pathNot: ['^src/daemon/', '^src/cli/commands/daemon[.]ts$'] },
      to: { path: '^src/daemon/' }
    },
    {
      name: 'api-and-router-import-no-daemon',
      severity: 'error',
      comment: 'the HTTP API and the router get ports from the root; they never see the root',
      from: { path: '^src/(api|router)/' },
      to: { path: '^src/daemon/' }
    },
    {
      name: 'only-the-root-composes',
      severity: 'error',
      comment: 'only the root builds the libp2p node, the HTTP server and the services and binds them together',
      from: { pathNot: ['^src/daemon/'] },
      to: { path: ['^src/node/create-node[.]ts$', '^src/api/server[.]ts$'] }
    },
    {
      name: 'only-node-creates-libp2p',
      severity: 'error',
      comment: 'createLibp2p and the transports are set up in one place (node/create-node.ts, and the yamux tuning it applies: node/yamux-window.ts)',
      from: { pathNot: ['^src/node/create-node[.]ts$', '^src/node/yamux-window[.]ts$'] },
      to: { dependencyTypesNot: ['type-only'], path: ['node_modules/libp2p/', 'node_modules/@libp2p/(tcp|websockets|noise|yamux)/', 'node_modules/@chainsafe/libp2p-(noise|yamux)/'] }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['src/protocol/generated/'] },
    // type-only imports are dependencies too: a cycle of types is still a cycle of concepts
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
      extensionAlias: { '.js': ['.ts', '.js'] }
    }
  }
}
