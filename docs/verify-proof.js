#!/usr/bin/env node
// Standalone check of an `openledger prove` proof: inclusion (openledger-inclusion-proof/v1) or consistency
// (openledger-consistency-proof/v1). Built-in modules only.
// Usage: node verify-proof.js proof.json [sha256:<root hex>]   exit 0 valid, 1 invalid, 2 bad input.
// The root argument pins the inclusion proof's root, or the consistency proof's NEW root.
// Algorithms: RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency);
// leaf = SHA-256(0x00 || id digest), node = SHA-256(0x01 || left || right).
'use strict';
const crypto = require('crypto'), fs = require('fs');
const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts)).digest();
const node = (left, right) => sha256(Buffer.from([1]), left, right);
const fail = (message) => { console.error(`error: ${message}`); process.exit(2); };
const hex = (s, what) => {
  const m = /^(?:sha256:)?([0-9a-f]{64})$/.exec(String(s));
  if (!m) fail(`${what} is not a SHA-256 digest: ${s}`);
  return Buffer.from(m[1], 'hex');
};
const size = (n, what) => { if (!Number.isSafeInteger(n) || n < 0) fail(`${what} is not a size`); return BigInt(n); };
if (process.argv.length < 3) fail('usage: node verify-proof.js proof.json [sha256:ROOT]');
let p;
try { p = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')); } catch (e) { fail(e.message); }
if (!p || !Array.isArray(p.path)) fail('not an openledger proof');
if (!process.argv[3]) console.error('note: trusting the root(s) in the proof itself; pass a root you got elsewhere to pin it');
const path = p.path.map((n) => hex(n, 'path entry'));
let ok, claim;
if (p.format === 'openledger-inclusion-proof/v1') {
  const root = hex(process.argv[3] || p.root, 'root');
  let fn = size(p.leaf_index, 'leaf_index'), sn = size(p.tree_size, 'tree_size') - 1n;
  let r = sha256(Buffer.from([0]), hex(p.record, 'record'));
  ok = fn <= sn;
  for (const sibling of path) {
    if (!ok || sn === 0n) { ok = false; break; }
    if ((fn & 1n) === 1n || fn === sn) {
      r = node(sibling, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else r = node(r, sibling);
    fn >>= 1n; sn >>= 1n;
  }
  ok = ok && sn === 0n && r.equals(root);
  claim = `${p.record} under root sha256:${root.toString('hex')}`;
} else if (p.format === 'openledger-consistency-proof/v1') {
  const m = size(p.old_size, 'old_size'), n = size(p.new_size, 'new_size');
  const oldRoot = hex(p.old_root, 'old_root'), newRoot = hex(process.argv[3] || p.new_root, 'new_root');
  if (m > n) ok = false;
  else if (m === n) ok = path.length === 0 && oldRoot.equals(newRoot);
  else if (m === 0n) ok = path.length === 0 && oldRoot.equals(sha256());  // every tree extends the empty one
  else {
    const nodes = (m & (m - 1n)) === 0n ? [oldRoot, ...path] : path;  // a power of two: the old root is a node
    let fn = m - 1n, sn = n - 1n;
    while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
    let fr = nodes[0], sr = nodes[0];
    ok = nodes.length > 0;
    for (const c of nodes.slice(1)) {
      if (!ok || sn === 0n) { ok = false; break; }
      if ((fn & 1n) === 1n || fn === sn) {
        fr = node(c, fr); sr = node(c, sr);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else sr = node(sr, c);
      fn >>= 1n; sn >>= 1n;
    }
    ok = ok && fr.equals(oldRoot) && sr.equals(newRoot) && sn === 0n;
  }
  claim = `tree ${n} (root sha256:${newRoot.toString('hex')}) extends tree ${m} (root sha256:${oldRoot.toString('hex')})`;
} else fail('not an openledger-inclusion-proof/v1 or openledger-consistency-proof/v1 document');
console.log(`${ok ? 'valid' : 'INVALID'}: ${claim}`);
process.exit(ok ? 0 : 1);
