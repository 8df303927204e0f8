// Builds the tablet into dist/: app.js and app.css (one bundle each,
// minified), index.html and sw.js. The output is reproducible: no
// timestamps; the build id that busts caches is a hash of the bundle, so
// the same sources give the same bytes. `node build.mjs --tests` bundles
// test/*.test.ts for `node --test` instead.

import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const out = join(here, "dist");

const common = {
  bundle: true,
  minify: true,
  legalComments: "none",
  charset: "utf8",
  target: ["chrome100", "safari15", "firefox100"],
  jsx: "automatic",
  jsxImportSource: "preact",
  logLevel: "warning",
};

if (process.argv.includes("--tests")) {
  const dir = join(here, "test");
  const tests = readdirSync(dir).filter((f) => f.endsWith(".test.ts"));
  rmSync(join(here, ".test-out"), { recursive: true, force: true });
  await build({
    ...common,
    minify: false,
    entryPoints: tests.map((f) => join(dir, f)),
    outdir: join(here, ".test-out"),
    outExtension: { ".js": ".mjs" },
    platform: "node",
    format: "esm",
    target: "node20",
  });
  process.exit(0);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  ...common,
  entryPoints: { app: join(here, "src/main.tsx") },
  outdir: out,
  format: "iife",
  loader: { ".woff2": "file" },
});

const hash = createHash("sha256");
for (const f of ["app.js", "app.css"]) hash.update(readFileSync(join(out, f)));
const id = hash.digest("hex").slice(0, 16);

await build({
  ...common,
  entryPoints: [join(here, "src/sw.ts")],
  outfile: join(out, "sw.js"),
  format: "iife",
  define: { BUILD_ID: JSON.stringify(id) },
});

writeFileSync(join(out, "index.html"), readFileSync(join(here, "src/index.html"), "utf8").replaceAll("%BUILD_ID%", id));

for (const f of readdirSync(out).sort()) {
  console.log(`dist/${f}\t${readFileSync(join(out, f)).length} bytes`);
}
