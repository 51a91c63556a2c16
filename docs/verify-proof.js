#!/usr/bin/env node
// Standalone check of an `openledger prove` inclusion proof (format openledger-inclusion-proof/v1).
// Usage: node verify-proof.js proof.json [sha256:<root hex>]   exit 0 valid, 1 invalid, 2 bad input.
// Algorithm: RFC 9162 section 2.1.3.2; leaf = SHA-256(0x00 || id digest), node = SHA-256(0x01 || left || right).
'use strict';
const crypto = require('crypto'), fs = require('fs');
const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts)).digest();
const hex = (s, what) => {
  const m = /^(?:sha256:)?([0-9a-f]{64})$/.exec(String(s));
  if (!m) { console.error(`error: ${what} is not a SHA-256 digest: ${s}`); process.exit(2); }
  return Buffer.from(m[1], 'hex');
};
if (process.argv.length < 3) { console.error('usage: node verify-proof.js proof.json [sha256:ROOT]'); process.exit(2); }
let p;
try { p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')); } catch (e) { console.error(`error: ${e.message}`); process.exit(2); }
if (!p || p.format !== 'openledger-inclusion-proof/v1' || !Array.isArray(p.path)
    || !Number.isSafeInteger(p.leaf_index) || !Number.isSafeInteger(p.tree_size)) {
  console.error('error: not an openledger-inclusion-proof/v1 document'); process.exit(2);
}
if (!process.argv[3]) console.error('note: trusting the "root" field of the proof itself; pass a root you got elsewhere to pin it');
const root = hex(process.argv[3] || p.root, 'root'), path = p.path.map((n) => hex(n, 'path entry'));
let fn = BigInt(p.leaf_index), sn = BigInt(p.tree_size) - 1n, r = sha256(Buffer.from([0]), hex(p.record, 'record'));
let ok = fn >= 0n && fn <= sn;
for (const sibling of path) {
  if (!ok || sn === 0n) { ok = false; break; }
  if ((fn & 1n) === 1n || fn === sn) {
    r = sha256(Buffer.from([1]), sibling, r);
    while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
  } else r = sha256(Buffer.from([1]), r, sibling);
  fn >>= 1n; sn >>= 1n;
}
ok = ok && sn === 0n && r.equals(root);
console.log(`${ok ? 'valid' : 'INVALID'}: ${p.record} under root sha256:${root.toString('hex')}`);
process.exit(ok ? 0 : 1);
