// A throwaway ATProto network on 127.0.0.1 for holdca's integration tests: the reference PLC
// directory (@did-plc/server, in-memory database) and the reference PDS (@atproto/pds, SQLite
// and a disk blobstore in a temporary directory). Both listen on 127.0.0.1 only, on free
// ports; the PDS runs in dev mode as http://localhost:<port>, with handles under `.test`, no
// invite codes, no crawlers, no app view and no email, so nothing outside is ever contacted.
//
// usage: node start.mjs [--exit-on-stdin-eof]
//
// Environment:
//   HOLDCA_ATPROTO_NET   the install (scripts/atproto-net.sh path): its node_modules is used
//   DATA_DIR             the PDS data directory (default: a new temporary one, removed at exit)
//   LOG_ENABLED=true     the PDS's and PLC's own logs, on stderr
//
// Prints exactly one line `READY {json}` on stdout once both servers answer HTTP, with
// plcUrl, pdsUrl, pdsDid, adminPassword, dataDir, pid, startupMs and versions. Stops cleanly
// on SIGTERM or SIGINT (and, with --exit-on-stdin-eof, when its parent closes stdin or dies).
// Exits 1 with a message on stderr when it cannot start.
import crypto from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const HOST = '127.0.0.1'
const started = Date.now()

const fail = (message) => {
  process.stderr.write(`start.mjs: ${message}\n`)
  process.exit(1)
}

const installDir = process.env.HOLDCA_ATPROTO_NET
if (!installDir) fail('HOLDCA_ATPROTO_NET is not set (scripts/atproto-net.sh path)')
if (!fs.existsSync(path.join(installDir, 'node_modules'))) {
  fail(`no node_modules under HOLDCA_ATPROTO_NET=${installDir}`)
}
// Resolve packages from the install, not from this file's directory.
const requireFromInstall = createRequire(path.join(installDir, 'package.json'))
const importFromInstall = (name) => import(pathToFileURL(requireFromInstall.resolve(name)).href)
const versionOf = (name) =>
  JSON.parse(fs.readFileSync(path.join(installDir, 'node_modules', name, 'package.json'), 'utf8'))
    .version

const { PlcServer, Database } = requireFromInstall('@did-plc/server')
const { Secp256k1Keypair } = await importFromInstall('@atproto/crypto')
// uint8arrays is import-only; Node 22 resolves it for require through its "module-sync" export
const { toString: bytesToString } = await importFromInstall('uint8arrays')
const pdsModule = await importFromInstall('@atproto/pds')
const { PDS } = pdsModule

// Express's app.listen(port) listens on every interface: pin each app to HOST.
const listenOnHost = (app) => {
  app.listen = (port) => http.createServer(app).listen(port, HOST)
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, HOST, () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })

const waitHealthy = async (url) => {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(url)
      if (res.ok) return
    } catch {}
    if (attempt >= 200) throw new Error(`${url} did not become healthy`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

let dataDir = process.env.DATA_DIR
const ownDataDir = !dataDir
if (ownDataDir) dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'holdca-pds-'))
fs.mkdirSync(dataDir, { recursive: true })

let plcServer = null
let pds = null
let stopping = null

const stop = (reason, exitCode = 0) => {
  if (stopping) return stopping
  stopping = (async () => {
    const watchdog = setTimeout(() => {
      process.stderr.write('start.mjs: shutdown took more than 15 s, exiting\n')
      process.exit(1)
    }, 15_000)
    watchdog.unref()
    let ok = true
    for (const [name, server] of [['pds', pds], ['plc', plcServer]]) {
      try {
        await server?.destroy()
      } catch (err) {
        ok = false
        process.stderr.write(`start.mjs: stopping the ${name}: ${err?.stack ?? err}\n`)
      }
    }
    if (ownDataDir) fs.rmSync(dataDir, { recursive: true, force: true })
    process.stderr.write(`start.mjs: stopped (${reason})\n`)
    process.exit(ok ? exitCode : 1)
  })()
  return stopping
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
if (process.argv.includes('--exit-on-stdin-eof')) {
  process.stdin.on('data', () => {})
  process.stdin.on('end', () => stop('stdin closed'))
  process.stdin.on('error', () => stop('stdin error'))
}

try {
  // (1) The PLC directory, in memory; port 0, so no race for its port.
  plcServer = PlcServer.create({ db: Database.mock(), port: 0, version: versionOf('@did-plc/server') })
  listenOnHost(plcServer.app)
  const plcHttp = await plcServer.start()
  const plcUrl = `http://${HOST}:${plcHttp.address().port}`

  // (2) The PDS, pointed at that directory. Its public URL (in every DID document and token)
  // needs its port before it listens: probe a free one, and retry if someone takes it first.
  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const adminPassword = crypto.randomBytes(16).toString('hex')
  let pdsPort
  for (let attempt = 1; ; attempt++) {
    pdsPort = await freePort()
    const attemptDir = path.join(dataDir, `pds-${attempt}`)
    fs.mkdirSync(attemptDir, { recursive: true })
    const candidate = await PDS.fromEnv({
      devMode: true,
      hostname: 'localhost', // service DID did:web:localhost, public URL http://localhost:<port>
      port: pdsPort,
      dataDirectory: attemptDir,
      blobstoreDiskLocation: path.join(attemptDir, 'blobs'),
      blobstoreDiskTmpLocation: path.join(attemptDir, 'blobs-tmp'),
      didPlcUrl: plcUrl,
      plcRotationKeyK256PrivateKeyHex: bytesToString(await rotationKey.export(), 'hex'),
      adminPassword,
      jwtSecret: crypto.randomBytes(32).toString('hex'),
      serviceHandleDomains: ['.test'],
      inviteRequired: false,
      disableSsrfProtection: true, // the PLC directory is on loopback
      crawlers: [],
    })
    listenOnHost(candidate.app)
    try {
      await candidate.start()
      pds = candidate
      break
    } catch (err) {
      await candidate.destroy().catch(() => {})
      if (err?.code !== 'EADDRINUSE' || attempt >= 5) throw err
      fs.rmSync(attemptDir, { recursive: true, force: true })
    }
  }
  const pdsUrl = `http://localhost:${pdsPort}`

  await waitHealthy(`${plcUrl}/_health`)
  await waitHealthy(`http://${HOST}:${pdsPort}/xrpc/_health`)

  const info = {
    plcUrl,
    pdsUrl,
    pdsDid: pds.ctx.cfg.service.did,
    adminPassword,
    dataDir,
    pid: process.pid,
    startupMs: Date.now() - started,
    versions: {
      node: process.version,
      pds: versionOf('@atproto/pds'),
      plc: versionOf('@did-plc/server'),
      crypto: versionOf('@atproto/crypto'),
    },
  }
  process.stdout.write(`READY ${JSON.stringify(info)}\n`)
} catch (err) {
  process.stderr.write(`start.mjs: cannot start: ${err?.stack ?? err}\n`)
  await stop('start-up failed', 1)
}
