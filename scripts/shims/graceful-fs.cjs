// Stands in for graceful-fs inside the CLI and ES module bundles (not the CommonJS build). proper-lockfile loads graceful-fs as
// its default fs, but portlease always passes an fs of its own (or takes the lock once, at
// exit, when graceful-fs's EMFILE queue cannot help), while loading graceful-fs patches
// Node's fs for the whole process and cost a visible part of a cold CLI claim (bench/RESULTS.md).
module.exports = require('node:fs');
