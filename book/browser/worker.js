// The training runs here, off the page's thread: Pyodide (CPython in WebAssembly) runs microgpt's own
// command line, `microgpt train names`, on the package's pure-Python modules, and every line it prints
// is posted to the page, step lines with the time since the previous one. Pyodide comes from where the
// book's manifest.json says: the copy bundled with the book ("pyodide/") or Pyodide's CDN, at the pinned
// release either way (book/_ext/browser_site.py).

const STEP = /^step\s+\d+ \/\s*\d+ \| loss /;
let python = null;

// A file Pyodide cannot fetch can leave its loader waiting for ever: every fetch of this worker is
// watched, and the first one that fails ends the start with a message naming the file.
const fetchFile = self.fetch.bind(self);
let failed = null;
self.fetch = async (resource, options) => {
  const name = String(resource.url || resource).split("/").pop();
  let response;
  try {
    response = await fetchFile(resource, options);
  } catch (err) {
    failed = failed || `could not fetch ${name} (${err.message})`;
    self.postMessage({ type: "fatal", text: failed });
    throw err;
  }
  if (!response.ok) {
    failed = failed || `could not fetch ${name} (HTTP ${response.status})`;
    self.postMessage({ type: "fatal", text: failed });
  }
  return response;
};

async function startPython() {
  const here = new URL(".", import.meta.url);
  const manifest = await (await fetch(new URL("manifest.json", here))).json();
  const indexURL = new URL(manifest.pyodide_url, here).href;
  const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL).href);
  const pyodide = await loadPyodide({ indexURL });
  pyodide.FS.mkdirTree("/home/pyodide/microgpt");
  for (const module of manifest.modules) {
    const response = await fetch(new URL(`microgpt/${module}.py`, here));
    if (!response.ok) throw new Error(`microgpt/${module}.py: HTTP ${response.status}`);
    pyodide.FS.writeFile(`/home/pyodide/microgpt/${module}.py`, await response.text());
  }
  const names = await fetch(new URL("names.txt", here));
  if (!names.ok) throw new Error(`names.txt: HTTP ${names.status}`);
  pyodide.FS.mkdirTree("/data");
  pyodide.FS.writeFile("/data/names.txt", new Uint8Array(await names.arrayBuffer()));
  // The package reads names.txt from MICROGPT_DATA and checks its SHA-256, as it does on any machine.
  pyodide.runPython(`import os, sys; os.environ["MICROGPT_DATA"] = "/data"; sys.path.insert(0, "/home/pyodide")`);
  return pyodide;
}

function train(argv) {
  let last = performance.now();
  const emit = (stream) => (text) => {
    const now = performance.now();
    const step = stream === "out" && STEP.test(text);
    self.postMessage({ type: "line", stream, text, ms: step ? now - last : null });
    if (step || text.startsWith("num params")) last = now;  // training starts right after this line
  };
  python.setStdout({ batched: emit("out") });
  python.setStderr({ batched: emit("err") });
  python.globals.set("argv", python.toPy(argv));
  return python.runPython("from microgpt.cli import main; main(argv)");
}

self.onmessage = async ({ data }) => {
  try {
    if (!python) {
      self.postMessage({ type: "status", text: "Loading Python (Pyodide) and microgpt…" });
      python = await startPython();
      const version = python.runPython("import platform; platform.python_version()");
      self.postMessage({ type: "status", text: `Python ${version} ready.` });
    }
  } catch (err) {
    self.postMessage({ type: "fatal", text: failed || String(err && err.message ? err.message : err).split("\n")[0] });
    return;
  }
  try {
    self.postMessage({ type: "done", code: train(data.argv) });
  } catch (err) {  // argparse's own exit (the page checks its inputs first) or a bug: its last line
    const lines = String(err && err.message ? err.message : err).trim().split("\n");
    self.postMessage({ type: "done", code: 1, error: lines[lines.length - 1] });
  }
};
