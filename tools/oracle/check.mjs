#!/usr/bin/env node
// Differential oracle: runs Microsoft's reference DTDL parser (DTDLParser, as the
// WebAssembly build published on npm as @digicatapult/dtdl-parser) over DTDL files
// or over DTDL conformance-suite files. Dev-only tool; see README.md.
//
//   node check.mjs [--allow-undefined-extensions|--deny-undefined-extensions]
//                  [--dmr ROOT] [--om FILE] [--time] PATH...
//   node check.mjs [-q] --spec FILE.json [--spec FILE2.json ...]
//
// Exit codes: 0 valid / all cases agree; 1 invalid / some case disagrees;
// 2 usage error; 3 the oracle itself failed (bad install, parser crash).

import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const USAGE = `usage: node check.mjs [--allow-undefined-extensions|--deny-undefined-extensions] [--dmr ROOT] [--om FILE] [--time] PATH...
       node check.mjs [-q] --spec FILE.json [--spec FILE.json ...]

PATH is a .json file or a folder (every *.json below it). All files are parsed
together, as one model set, in one call. Prints "valid" (exit 0) or the parser's
errors (exit 1).

  --allow-undefined-extensions  ParsingOptions.AllowUndefinedExtensions = Always
  --deny-undefined-extensions   ParsingOptions.AllowUndefinedExtensions = Never
                                (neither: PerDefault, i.e. v2 allows, v3 denies)
  --dmr ROOT                    resolve references the way a device model
                                repository does: dtmi:com:example:Foo;1 is read from
                                ROOT/dtmi/com/example/foo-1.json (the parser has no
                                resolver callback, so this re-parses with the files
                                for the reported unresolved DTMIs added, until done)
  --om FILE                     also write the parser's JSON object model to FILE
  --time                        print WASM start-up and parse times to stderr
  --spec FILE                   run a conformance file (JSON array of cases
                                {valid, options, input, expect}); repeatable; a
                                folder means every *.json below it
  -q, --quiet                   with --spec, print only disagreements and totals`

// ---------------------------------------------------------------------------
// Locating and loading the reference parser

const PKG = '@digicatapult/dtdl-parser'
let interopDir // .../node_modules/@digicatapult/dtdl-parser/build/interop
let pkgVersion
function locatePackage () {
  let entry
  try {
    entry = fileURLToPath(import.meta.resolve(PKG)) // .../build/index.js
  } catch {
    fail(`cannot find ${PKG}; run "npm ci" (or "npm install") in ${path.dirname(fileURLToPath(import.meta.url))}`)
  }
  const pkgDir = path.resolve(path.dirname(entry), '..')
  pkgVersion = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version
  interopDir = path.join(pkgDir, 'build', 'interop')
}

// The interop in the npm package hard-codes `new ModelParser()` (no ParsingOptions,
// no DTMI resolver) and exposes only Parse(string) and ParserVersion(). The .NET code
// is AOT-compiled into dotnet.native.wasm (IL bodies are stripped), so the only way to
// get AllowUndefinedExtensions = Always/Never is to patch the compiled ModelParser
// constructor. For the null-options path it initialises two adjacent int fields with
// one `i64.store offset=44` of the constant 4: MaxDtdlVersion (offset 44) = 4 and
// AllowUndefinedExtensions (offset 48) = 0 = WhenToAllow.PerDefault. We change the
// constant to 4 | (N << 32), N = 1 (Always) or 2 (Never), in a copy of the interop
// folder. The patch is tied to the exact bytes of dotnet.native.wasm in 1.1.83 and
// refuses to run on anything else. See README.md for how these numbers were found.
const PATCH = {
  nativeSha256: 'd9d91647b07f8caf37f3335ac1923d9d96554e7c2dc905108f1576421dbd1ef1',
  codeSectionStart: 100368, // first byte of the code section's contents
  funcIndex: 296, // AOT code of DTDLParser.ModelParser::.ctor (MethodDef 0x060000d7)
  importedFuncs: 74,
  bodyStart: 444260, // first byte of function 296's body (after its size)
  constAt: 444673, // `i64.const 4` (0x42 0x04) followed by `i64.store align=2 offset=44` (0x37 0x02 0x2c)
}
const WHEN_TO_ALLOW = { default: 0, allow: 1, deny: 2 }

function uleb (n) {
  const out = []
  do { let x = n % 128; n = Math.floor(n / 128); if (n) x |= 0x80; out.push(x) } while (n)
  return Buffer.from(out)
}
function sleb64 (v) {
  v = BigInt(v)
  const out = []
  for (;;) {
    let x = Number(v & 0x7fn); v >>= 7n
    const done = (v === 0n && !(x & 0x40)) || (v === -1n && (x & 0x40))
    if (!done) x |= 0x80
    out.push(x)
    if (done) return Buffer.from(out)
  }
}
function readUleb (b, p) { let n = 0, s = 0, x; do { x = b[p++]; n += (x & 0x7f) * 2 ** s; s += 7 } while (x & 0x80); return [n, p] }

function patchNative (b, whenToAllow) {
  const sha = createHash('sha256').update(b).digest('hex')
  if (sha !== PATCH.nativeSha256) {
    throw new Error(`dotnet.native.wasm is not the build this patch was made for (sha256 ${sha}); ` +
      'undefined-extension options are only supported with @digicatapult/dtdl-parser 1.1.83')
  }
  // walk the code section to the function body, checking our recorded offsets
  let p = PATCH.codeSectionStart
  let count; [count, p] = readUleb(b, p)
  const target = PATCH.funcIndex - PATCH.importedFuncs
  let sizeAt, size
  for (let i = 0; i <= target; i++) { sizeAt = p; [size, p] = readUleb(b, p); if (i < target) p += size }
  if (count < target || p !== PATCH.bodyStart) throw new Error('unexpected code-section layout')
  const c = PATCH.constAt
  if (!(b[c] === 0x42 && b[c + 1] === 0x04 && b[c + 2] === 0x37 && b[c + 3] === 0x02 && b[c + 4] === 0x2c)) {
    throw new Error('unexpected bytes at the patch site')
  }
  const repl = Buffer.concat([Buffer.from([0x42]), sleb64(4n | (BigInt(whenToAllow) << 32n))])
  const grow = repl.length - 2
  const newBodySizeLeb = uleb(size + grow)
  const oldBodySizeLen = PATCH.bodyStart - sizeAt
  let secLebStart = PATCH.codeSectionStart - 1
  while (b[secLebStart - 1] & 0x80) secLebStart--
  const [secSize] = readUleb(b, secLebStart)
  const newSecSize = secSize + grow + newBodySizeLeb.length - oldBodySizeLen
  return Buffer.concat([
    b.subarray(0, secLebStart), uleb(newSecSize),
    b.subarray(PATCH.codeSectionStart, sizeAt), newBodySizeLeb,
    b.subarray(PATCH.bodyStart, c), repl, b.subarray(c + 2),
  ])
}

// Returns the folder holding modelParser.js for a variant: the package's own for
// 'default', else a patched copy cached under node_modules/.cache/.
function variantDir (variant) {
  if (variant === 'default') return interopDir
  const nodeModules = path.resolve(interopDir, '..', '..', '..', '..')
  const dir = path.join(nodeModules, '.cache', 'twingraph-dtdl-oracle', `${pkgVersion}-${variant}`)
  const stamp = path.join(dir, 'PATCHED')
  if (fs.existsSync(stamp)) return dir
  const tmp = `${dir}.tmp-${process.pid}`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  try {
    fs.cpSync(interopDir, tmp, { recursive: true })
    const native = path.join(tmp, '_framework', 'dotnet.native.wasm')
    const patched = patchNative(fs.readFileSync(native), WHEN_TO_ALLOW[variant])
    fs.writeFileSync(native, patched)
    const bootPath = path.join(tmp, '_framework', 'blazor.boot.json')
    const boot = JSON.parse(fs.readFileSync(bootPath, 'utf8'))
    boot.resources.wasmNative['dotnet.native.wasm'] = 'sha256-' + createHash('sha256').update(patched).digest('base64')
    fs.writeFileSync(bootPath, JSON.stringify(boot, null, 2))
    fs.writeFileSync(path.join(tmp, 'PATCHED'), `AllowUndefinedExtensions = ${variant === 'allow' ? 'Always' : 'Never'}\n`)
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true })
    throw e
  }
  try {
    fs.renameSync(tmp, dir)
  } catch (e) { // another process won the race
    fs.rmSync(tmp, { recursive: true, force: true })
    if (!fs.existsSync(stamp)) throw e
  }
  return dir
}

const loaded = new Map()
async function parserFor (variant) {
  if (!loaded.has(variant)) {
    const dir = variantDir(variant)
    // Each folder is a separate ES module, hence a separate .NET runtime instance;
    // several can live in one process.
    const mod = await import(pathToFileURL(path.join(dir, 'modelParser.js')).href)
    loaded.set(variant, mod)
  }
  return loaded.get(variant)
}

// parse(text) -> {kind:'valid', om} | {kind:'parsing', errors} | {kind:'resolution', ids}
//              | {kind:'crash', message}
function runParse (parser, text) {
  let om
  try {
    om = parser.parse(text)
  } catch (e) {
    const message = e && e.message !== undefined ? String(e.message) : String(e)
    let j
    try { j = JSON.parse(message) } catch { return { kind: 'crash', message } }
    if (j && j.ExceptionKind === 'Parsing') return { kind: 'parsing', errors: j.Errors || [] }
    if (j && j.ExceptionKind === 'Resolution') return { kind: 'resolution', ids: j.UndefinedIdentifiers || [] }
    return { kind: 'crash', message }
  }
  return { kind: 'valid', om }
}

// ---------------------------------------------------------------------------
// Helpers

function fail (msg, code = 3) { process.stderr.write(`error: ${msg}\n`); process.exit(code) }
function usage (msg) { if (msg) process.stderr.write(`error: ${msg}\n`); process.stderr.write(USAGE + '\n'); process.exit(2) }

function readText (file) {
  let t = fs.readFileSync(file, 'utf8')
  if (t.charCodeAt(0) === 0xfeff) t = t.slice(1)
  return t
}

function collectJson (p, out) {
  let st
  try { st = fs.statSync(p) } catch { usage(`no such file or folder: ${p}`) }
  if (st.isDirectory()) {
    const walk = (dir) => {
      for (const ent of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) {
        const full = path.join(dir, ent.name)
        const s = fs.statSync(full)
        if (s.isDirectory()) walk(full)
        else if (s.isFile() && ent.name.toLowerCase().endsWith('.json')) out.push(full)
      }
    }
    walk(p)
  } else {
    out.push(p)
  }
}

function oneLine (s) { return String(s).replace(/\s+/g, ' ').trim() }
function formatError (e) {
  const parts = [oneLine(e.Cause ?? ''), oneLine(e.Action ?? '')]
  if (e.PrimaryID) parts.push(e.PrimaryID)
  return parts.join(' / ')
}

// Raw source text of each case's "input" in a conformance file, so the parser sees
// exactly the bytes of the suite (JSON.stringify would turn 1.0 into 1, 1e3 into
// 1000 and drop duplicate keys).
function rawInputs (text) {
  let i = 0
  const stack = [] // open containers while skipping a value: '{' or '['
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++ }
  const expect = (c) => { ws(); if (text[i] !== c) throw new Error(`expected '${c}' at offset ${i}`); i++ }
  const str = () => {
    ws()
    const start = i
    if (text[i] !== '"') throw new Error(`expected a string at offset ${i}`)
    for (i++; text[i] !== '"'; i++) { if (text[i] === '\\') i++; if (i >= text.length) throw new Error('unterminated string') }
    i++
    return JSON.parse(text.slice(start, i))
  }
  const skip = () => { // one value, iteratively, so deep nesting is no problem
    const base = stack.length
    for (;;) {
      ws()
      const c = text[i]
      if (c === '{' || c === '[') {
        stack.push(c); i++; ws()
        if (text[i] === '}' || text[i] === ']') { stack.pop(); i++ } else { if (c === '{') { str(); expect(':') } continue }
      } else if (c === '"') str()
      else { const s = i; while (i < text.length && !',]}: \t\r\n'.includes(text[i])) i++; if (i === s) throw new Error(`unexpected '${c}' at offset ${i}`) }
      for (ws(); stack.length > base && (text[i] === '}' || text[i] === ']'); ws()) { stack.pop(); i++ }
      if (stack.length === base) return
      expect(',')
      if (stack[stack.length - 1] === '{') { str(); expect(':') }
    }
  }
  const out = []
  expect('[')
  ws()
  if (text[i] === ']') return out
  for (;;) {
    expect('{')
    let raw = null
    ws()
    if (text[i] !== '}') {
      for (;;) {
        const key = str()
        expect(':'); ws()
        const start = i
        skip()
        if (key === 'input') raw = text.slice(start, i)
        ws()
        if (text[i] !== ',') break
        i++
      }
    }
    expect('}')
    out.push(raw)
    ws()
    if (text[i] !== ',') break
    i++
  }
  expect(']')
  return out
}

// ---------------------------------------------------------------------------
// Modes

// DMR path convention: dtmi:com:example:Thermostat;1 -> dtmi/com/example/thermostat-1.json
function dmrPath (root, dtmi) {
  const m = /^dtmi:([^;#]+);([0-9]+)$/.exec(dtmi)
  if (!m) return null
  return path.join(root, 'dtmi', ...m[1].toLowerCase().split(':').slice(0, -1), `${m[1].toLowerCase().split(':').pop()}-${m[2]}.json`)
}

function loadJsonFile (f) {
  const t = readText(f)
  try { JSON.parse(t) } catch (e) {
    process.stdout.write(`invalid JSON: ${f}: ${oneLine(e.message)}\n`)
    process.exit(1)
  }
  return t
}

async function checkPaths (paths, variant, omFile, timing, dmrRoot) {
  const files = []
  for (const p of paths) collectJson(p, files)
  if (files.length === 0) usage('no .json files found')
  const texts = files.map(loadJsonFile)
  const seen = new Set(files.map((f) => path.resolve(f)))
  const t0 = performance.now()
  const parser = await parserFor(variant)
  const t1 = performance.now()
  let r, text, rounds = 0
  for (;;) {
    // One parse call: the interop takes a single JSON text, so several files become
    // one JSON array whose elements are the files' documents (an element may itself be
    // an array; DTDLParser accepts that).
    text = texts.length === 1 ? texts[0] : '[\n' + texts.join('\n,\n') + '\n]'
    r = runParse(parser, text)
    rounds++
    if (r.kind !== 'resolution' || !dmrRoot) break
    const more = r.ids.map((id) => dmrPath(dmrRoot, id)).filter((f) => f && !seen.has(path.resolve(f)) && fs.existsSync(f))
    if (more.length === 0) break
    for (const f of more) { seen.add(path.resolve(f)); files.push(f); texts.push(loadJsonFile(f)) }
  }
  const t2 = performance.now()
  if (timing) {
    process.stderr.write(`files ${files.length}, bytes ${Buffer.byteLength(text)}, parse calls ${rounds}, parser ${parser.parserVersion()}\n`)
    process.stderr.write(`start-up ${(t1 - t0).toFixed(0)} ms, parse ${(t2 - t1).toFixed(0)} ms\n`)
  }
  switch (r.kind) {
    case 'valid':
      if (omFile) fs.writeFileSync(omFile, r.om)
      process.stdout.write('valid\n')
      return 0
    case 'parsing':
      for (const e of r.errors) process.stdout.write(formatError(e) + '\n')
      return 1
    case 'resolution':
      for (const id of r.ids) process.stdout.write(`unresolved reference: ${id}\n`)
      return 1
    default:
      fail(`the reference parser crashed: ${oneLine(r.message)}`)
  }
}

const OPTION_VARIANT = { AllowUndefinedExtensions: 'allow', DisallowUndefinedExtensions: 'deny' }

async function checkSpec (specPaths, cliVariant, quiet) {
  const files = []
  for (const p of specPaths) collectJson(p, files)
  if (files.length === 0) usage('no .json files found')
  let agree = 0, total = 0, crashes = 0, unresolvedMismatch = 0
  for (const file of files) {
    const text = readText(file)
    let cases, raws
    try {
      cases = JSON.parse(text)
      if (!Array.isArray(cases)) throw new Error('not a JSON array')
      raws = rawInputs(text)
      if (raws.length !== cases.length) throw new Error('could not locate every case input')
    } catch (e) { usage(`${file}: not a conformance file: ${e.message}`) }
    const name = path.basename(file)
    for (let k = 0; k < cases.length; k++) {
      const c = cases[k]
      const opts = Array.isArray(c.options) ? c.options : []
      const unknown = opts.filter((o) => !(o in OPTION_VARIANT))
      if (unknown.length) usage(`${name}#${k + 1}: unsupported option(s) ${unknown.join(', ')}`)
      const variant = opts.length ? OPTION_VARIANT[opts[opts.length - 1]] : cliVariant
      const optLabel = opts.length ? opts.join(',') : variant
      if (raws[k] === null) usage(`${name}#${k + 1}: case has no "input"`)
      const r = runParse(await parserFor(variant), raws[k])
      total++
      const specValid = c.valid === true
      let refValid, detail
      if (r.kind === 'valid') { refValid = true; detail = '' }
      else if (r.kind === 'parsing') {
        refValid = false
        const e = r.errors[0] || {}
        detail = `${e.ValidationID ?? ''}${r.errors.length > 1 ? ` (+${r.errors.length - 1} more)` : ''}: ${oneLine(e.Cause ?? '')}`
      } else if (r.kind === 'resolution') {
        refValid = false // incomplete: references that nothing resolves
        detail = `unresolved ${r.ids.join(', ')}`
      } else { refValid = null; crashes++; detail = `CRASH ${oneLine(r.message)}` }
      let note = ''
      const expected = c.expect && Array.isArray(c.expect.unresolvedIdentifiers) ? c.expect.unresolvedIdentifiers : null
      if (expected) {
        const got = r.kind === 'resolution' ? [...r.ids].sort() : []
        const want = [...expected].sort()
        const same = got.length === want.length && got.every((x, i) => x === want[i])
        if (!same) unresolvedMismatch++
        note = same ? ' [expected unresolved: match]' : ` [expected unresolved: ${want.join(', ')} — MISMATCH]`
      }
      const ok = refValid === specValid
      if (ok) agree++
      if (!quiet || !ok) {
        process.stdout.write(`${ok ? 'agree   ' : 'DISAGREE'} ${name}#${k + 1} [${optLabel}] spec=${specValid ? 'valid' : 'invalid'} ref=${refValid === null ? 'error' : refValid ? 'valid' : 'invalid'}${detail ? ' ' + detail : ''}${note}\n`)
      }
    }
  }
  const extra = []
  if (crashes) extra.push(`${crashes} parser crash(es)`)
  if (unresolvedMismatch) extra.push(`${unresolvedMismatch} unresolved-identifier mismatch(es)`)
  process.stdout.write(`agree ${agree} / total ${total}${extra.length ? ` (${extra.join(', ')})` : ''}\n`)
  return agree === total ? 0 : 1
}

// ---------------------------------------------------------------------------
// main

const args = process.argv.slice(2)
let variant = 'default'
let omFile = null, dmrRoot = null, timing = false, quiet = false
const specs = [], paths = []
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--allow-undefined-extensions' || a === '--deny-undefined-extensions') {
    const v = a.startsWith('--allow') ? 'allow' : 'deny'
    if (variant !== 'default' && variant !== v) usage('--allow-undefined-extensions and --deny-undefined-extensions exclude each other')
    variant = v
  } else if (a === '--spec') {
    if (i + 1 >= args.length) usage('--spec needs a file')
    specs.push(args[++i])
  } else if (a === '--dmr') {
    if (i + 1 >= args.length) usage('--dmr needs a folder')
    dmrRoot = args[++i]
  } else if (a === '--om') {
    if (i + 1 >= args.length) usage('--om needs a file')
    omFile = args[++i]
  } else if (a === '--time') timing = true
  else if (a === '-q' || a === '--quiet') quiet = true
  else if (a === '-h' || a === '--help') { process.stdout.write(USAGE + '\n'); process.exit(0) }
  else if (a === '--') { paths.push(...args.slice(i + 1)); break }
  else if (a.startsWith('-')) usage(`unknown option ${a}`)
  else paths.push(a)
}
if (specs.length && paths.length) usage('give either --spec files or model paths, not both')
if (!specs.length && !paths.length) usage()
if (specs.length && (omFile || dmrRoot)) usage('--om and --dmr are for model paths, not --spec')

locatePackage()
try {
  process.exitCode = specs.length ? await checkSpec(specs, variant, quiet) : await checkPaths(paths, variant, omFile, timing, dmrRoot)
} catch (e) {
  fail(e && e.stack ? e.stack : String(e))
}
// The .NET runtime may keep timers alive; leave once output is flushed.
process.stdout.write('', () => process.exit(process.exitCode))
