// The controls of the in-browser training page: check the inputs, start the worker, draw the loss curve
// as the step lines arrive, show the step time and, at the end, the sampled names.
(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("mgpt-form"), stopButton = $("mgpt-stop"), trainButton = $("mgpt-train");
  const message = $("mgpt-message"), status = $("mgpt-status"), log = $("mgpt-log");
  const samples = $("mgpt-samples"), canvas = $("mgpt-curve");
  const STEP = /^step\s+(\d+) \/\s*(\d+) \| loss ([\d.]+)$/;
  const SAMPLE = /^sample\s+\d+: (.*)$/;
  const MAX_STEPS = 100000;
  let worker = null, run = null;

  function readInputs() {
    const steps = $("mgpt-steps").value.trim(), seed = $("mgpt-seed").value.trim();
    const temperature = $("mgpt-temperature").value.trim();
    if (!/^\d+$/.test(steps) || Number(steps) < 1 || Number(steps) > MAX_STEPS) {
      return { error: `Steps must be a whole number from 1 to ${MAX_STEPS.toLocaleString("en")}, not "${steps}".` };
    }
    if (!/^-?\d+$/.test(seed)) return { error: `The seed must be a whole number such as 42, not "${seed}".` };
    if (temperature === "" || !Number.isFinite(Number(temperature)) || !(Number(temperature) > 0)) {
      return { error: `The temperature must be a number above 0 such as 0.5, not "${temperature}".` };
    }
    const engine = $("mgpt-engine").value, exact = $("mgpt-exact").checked ? ["--exact-loss"] : [];
    return { steps: Number(steps), argv: ["train", "names", "--engine", engine, "--steps", steps, "--seed", seed,
                                         "--temperature", temperature, "--log-every", "1", ...exact] };
  }

  function median(xs) {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = w * ratio; canvas.height = h * ratio;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, w, h);
    const pad = { left: 56, right: 12, top: 12, bottom: 34 };
    const losses = run ? run.losses : [], total = run ? run.steps : 1;
    const lo = losses.length ? Math.min(1.5, Math.floor(Math.min(...losses) * 2) / 2) : 1.5;
    const hi = losses.length ? Math.max(4, Math.ceil(Math.max(...losses) * 2) / 2) : 4;
    const x = (step) => pad.left + (w - pad.left - pad.right) * (total > 1 ? (step - 1) / (total - 1) : 0.5);
    const y = (loss) => pad.top + (h - pad.top - pad.bottom) * (hi - loss) / (hi - lo);
    ctx.font = "12px sans-serif"; ctx.fillStyle = "#555"; ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
    for (let v = lo; v <= hi + 1e-9; v += 0.5) {
      ctx.beginPath(); ctx.moveTo(pad.left, y(v)); ctx.lineTo(w - pad.right, y(v)); ctx.stroke();
      ctx.fillText(v.toFixed(1), 26, y(v) + 4);
    }
    ctx.save(); ctx.translate(14, h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("loss", -12, 0); ctx.restore();
    ctx.fillText(`step (1 to ${total.toLocaleString("en")})`, w / 2 - 40, h - 8);
    const line = (values, color, width) => {
      ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
      values.forEach((v, i) => (i ? ctx.lineTo(x(i + 1), y(v)) : ctx.moveTo(x(1), y(v))));
      ctx.stroke();
    };
    line(losses, "#9ecae1", 1);  // one name per step: noisy
    let sum = 0;
    const mean = losses.map((v, i) => { sum += v - (i >= 50 ? losses[i - 50] : 0); return sum / Math.min(i + 1, 50); });
    line(mean, "#08519c", 2);  // the mean of the last 50 steps
  }

  function onLine({ stream, text, ms }) {
    log.textContent += text + "\n";
    log.scrollTop = log.scrollHeight;
    const step = stream === "out" && text.match(STEP);
    if (step) {
      run.losses.push(Number(step[3]));
      run.ms.push(ms);
      const recent = run.ms.slice(-50);
      $("mgpt-step").textContent = `${Number(step[1]).toLocaleString("en")} / ${run.steps.toLocaleString("en")}`;
      $("mgpt-loss").textContent = step[3];
      $("mgpt-ms").textContent = `${median(recent).toFixed(1)} ms (median of the last ${recent.length})`;
      status.textContent = "Training…";
      if (!run.frame) run.frame = requestAnimationFrame(() => { run.frame = 0; draw(); });
    }
    const sample = stream === "out" && text.match(SAMPLE);
    if (sample) {
      const item = document.createElement("li");
      item.textContent = sample[1];
      samples.appendChild(item);
    }
    if (stream === "err" && text.startsWith("microgpt: error:")) message.textContent = text;
  }

  function finish(text) {
    status.textContent = text;
    trainButton.disabled = false; stopButton.disabled = true;
    draw();
  }

  function failToLoad(reason) {
    if (worker) worker.terminate();
    worker = null;
    message.textContent = `Python could not be loaded in this browser (${reason}); `
                        + "check the connection and reload the page to try again.";
    finish("");
  }

  function startWorker() {
    if (typeof Worker === "undefined") return failToLoad("this browser has no Web Workers");
    worker = new Worker(new URL("../browser/worker.js", document.baseURI), { type: "module" });
    worker.onerror = (event) => {
      event.preventDefault();
      failToLoad(event.message || "the worker script did not start");
    };
    worker.onmessage = ({ data }) => {
      if (data.type === "status") status.textContent = data.text;
      else if (data.type === "fatal") failToLoad(`Pyodide failed to start: ${data.text}`);
      else if (data.type === "line") onLine(data);
      else if (data.type === "done") {
        if (data.error) message.textContent = data.error;
        finish(data.code === 0 ? `Done: ${run.losses.length.toLocaleString("en")} steps.` : "Training failed.");
      }
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const inputs = readInputs();
    message.textContent = inputs.error || "";
    if (inputs.error) return;
    run = { steps: inputs.steps, losses: [], ms: [], frame: 0 };
    log.textContent = `$ microgpt ${inputs.argv.join(" ")}\n`;
    samples.replaceChildren();
    for (const id of ["mgpt-step", "mgpt-loss", "mgpt-ms"]) $(id).textContent = "–";
    trainButton.disabled = true; stopButton.disabled = false;
    if (!worker) startWorker();
    if (worker) worker.postMessage({ argv: inputs.argv });
    draw();
  });

  stopButton.addEventListener("click", () => {
    // Python cannot be interrupted between two steps from outside its worker: the worker goes, with its
    // model; the next Train starts a fresh one (Pyodide then comes from the browser's cache).
    if (worker) worker.terminate();
    worker = null;
    finish(`Stopped after ${run.losses.length.toLocaleString("en")} of ${run.steps.toLocaleString("en")} steps.`);
  });

  window.addEventListener("resize", draw);
  draw();
})();
