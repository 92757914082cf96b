// Run Python code in Pyodide under Node, with the files the training page loads.
//
//   node tests/pyodide_run.mjs < request.json
//
// The request names the unpacked Pyodide package ("pyodide"), the files to write into Pyodide's file
// system ("files": path -> text, "binary": path -> a file on this machine to copy) and the Python
// expression to evaluate last ("code"); what it evaluates to, a string, is written to stdout.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const request = JSON.parse(fs.readFileSync(0, "utf8"));
const { loadPyodide } = await import(pathToFileURL(path.join(request.pyodide, "pyodide.mjs")).href);
const python = await loadPyodide({ indexURL: request.pyodide + path.sep });
for (const [where, text] of Object.entries(request.files)) {
  python.FS.mkdirTree(path.posix.dirname(where));
  python.FS.writeFile(where, text);
}
for (const [where, source] of Object.entries(request.binary)) {
  python.FS.mkdirTree(path.posix.dirname(where));
  python.FS.writeFile(where, fs.readFileSync(source));
}
process.stdout.write(python.runPython(request.code));
