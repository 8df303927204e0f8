#!/usr/bin/env node
// Parses HL7 v2 files with hl7parser, an HL7 parser written independently
// of hl7/v2, and prints what it decoded as JSON in hl7/v2's canonical shape
// (empty element = null, trailing empty elements dropped), for
// validator_test.go to compare with its own parse. hl7parser decodes
// \F\ \S\ \T\ \R\ \E\ and \Xhh\ but passes formatting commands such as
// \.br\ through unchanged; the Go side allows for that.
'use strict';
const fs = require('fs');
const hl7 = require('hl7parser');

function trim(list) {
  while (list.length > 0 && list[list.length - 1] === null) list.pop();
  return list.length === 0 ? null : list;
}

function node(n, depth) {
  // depth 0: field (repetitions), 1: repetition (components),
  // 2: component (subcomponents), 3: subcomponent (text).
  if (depth === 3) {
    const s = n.toString();
    return s === '' ? null : s;
  }
  const out = [];
  n.forEach((child) => out.push(node(child, depth + 1)));
  if (depth === 2) {
    // Subcomponents are strings; an empty one inside is "".
    const subs = out.map((s) => (s === null ? '' : s));
    while (subs.length > 0 && subs[subs.length - 1] === '') subs.pop();
    return subs.length === 0 ? null : subs;
  }
  return trim(out);
}

const result = {};
for (const file of process.argv.slice(2)) {
  let text = fs.readFileSync(file, 'utf8');
  if (text.endsWith('\r')) text = text.slice(0, -1); // hl7parser rejects an empty last segment
  const msg = hl7.create(text);
  const segments = [];
  msg.forEach((seg) => {
    const fields = [];
    // Child 0 is the segment name. In MSH, hl7parser also splits the
    // encoding characters (MSH-2) as data; compare from MSH-3 on.
    const first = seg.name === 'MSH' ? 2 : 1;
    seg.forEach((f, j) => {
      if (j >= first) fields.push(node(f, 0));
    });
    segments.push({ id: seg.name, fields: trim(fields) || [] });
  });
  result[file.split('/').pop()] = segments;
}
process.stdout.write(JSON.stringify(result));
