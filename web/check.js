// The device-check runner (`portrait device-check`, toolchain/device/device_check.py serves it).
//
// It fetches /plan.json, then for each job (one model file on one backend) it loads the file, feeds the
// input bytes the server prepared exactly as the manifest says, posts every raw output back as bytes
// (POST /output), times `runs` more runs (those golden runs are the warm-up), and reports the job's status (POST /job).
// It computes no metric: the server judges the outputs with the checker `portrait check` uses.
import {loadLiteRt, loadAndCompile, Tensor} from '/node_modules/@litertjs/core/dist/index.js';
import {FilesetResolver, ImageSegmenter} from '/node_modules/@mediapipe/tasks-vision/vision_bundle.mjs';

const TYPED = {float32: Float32Array, uint8: Uint8Array, int32: Int32Array, int8: Int8Array};

function log(text, cls) {
  const line = document.createElement('div');
  line.textContent = text;
  if (cls) line.className = cls;
  document.getElementById('log').appendChild(line);
}

async function post(path, body, json = true) {
  const r = await fetch(path, {method: 'POST', body: json ? JSON.stringify(body) : body,
                               headers: {'Content-Type': json ? 'application/json' : 'application/octet-stream'}});
  if (!r.ok) throw new Error(`POST ${path}: HTTP ${r.status}`);
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// One raw output back to the server: bytes in the body, what they are in the query.
async function postOutput(job, source, name, dtype, shape, typed) {
  const q = new URLSearchParams({job: job.id, source, name, dtype, shape: shape.join(',')});
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  await post(`/output?${q}`, bytes.slice(), false);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function environment() {
  const env = {user_agent: navigator.userAgent, cores: navigator.hardwareConcurrency || 0, webgpu_adapter: null};
  if (!window.isSecureContext) {
    // browsers offer WebGPU only to https or localhost pages; a phone on http://<LAN address> has none
    env.webgpu_error = 'the page is not a secure context (http on a LAN address): WebGPU needs https or localhost ' +
                       '(Android: adb reverse tcp:PORT tcp:PORT, then open http://localhost:PORT/)';
  }
  try {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
    if (adapter) {
      const i = adapter.info || {};
      env.webgpu_adapter = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ') || 'unnamed';
    }
  } catch (e) {
    env.webgpu_error = String(e);
  }
  try {   // MediaPipe's GPU delegate draws with WebGL2
    const gl = document.createElement('canvas').getContext('webgl2');
    const dbg = gl && gl.getExtension('WEBGL_debug_renderer_info');
    env.webgl_renderer = gl ? String(gl.getParameter(dbg ? dbg.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : null;
  } catch (e) {
    env.webgl_renderer = null;
  }
  // A software GPU (SwiftShader on a machine without one, e.g. CI) is ~20x slower than the CPU path and
  // says nothing about a phone's GPU latency: there a GPU job runs one golden image and is not timed.
  const soft = /swiftshader|llvmpipe|software/i;
  env.software_webgpu = Boolean(env.webgpu_adapter && soft.test(env.webgpu_adapter));
  env.software_webgl = Boolean(env.webgl_renderer && soft.test(env.webgl_renderer));
  return env;
}

function isSoftware(env, job) {
  return job.backend === 'webgpu' ? env.software_webgpu : job.backend === 'gpu' ? env.software_webgl : false;
}

// Test hook (device_check's `fault`): in the named job, an uncaught error as a broken page would throw
// (kind "throw"), or a job that never finishes and says nothing, as a stuck runtime would (kind "hang").
function maybeFault(plan, job) {
  const f = plan.fault;
  if (f && f.file === job.file && f.backend === job.backend) {
    if ((f.kind || 'throw') === 'throw') {
      setTimeout(() => { throw new Error(`test hook: the page throws in ${job.file} on ${job.backend}`); }, 0);
    }
    return new Promise(() => {});   // the job never finishes: the server must not wait for it
  }
  return null;
}

// ---------------------------------------------------------------- LiteRT.js

async function readTensor(t) {
  const arr = await t.data();   // copies back from the GPU where the output lives there
  return new TYPED[t.type.dtype](arr);   // own the bytes before the tensor is freed
}

async function runLiteRt(plan, job, soft) {
  let model;
  const t0 = performance.now();
  try {
    model = await loadAndCompile(job.url, {accelerator: job.backend});
  } catch (e) {
    return {status: 'no-load', message: String(e && e.message || e)};
  }
  const tLoad = performance.now();
  const outDetails = model.getOutputDetails();
  const inputs = [];
  for (const inp of soft ? job.inputs.slice(0, 1) : job.inputs) {
    const bytes = await fetchBytes(inp.url);
    inputs.push({source: inp.source, data: new TYPED[inp.dtype](bytes.buffer), shape: inp.shape});
  }
  async function once(inp, keep) {
    const t = new Tensor(inp.data, inp.shape);
    const outs = await model.run([t]);
    const got = [];
    for (const o of outs) got.push(await readTensor(o));
    t.delete();
    for (const o of outs) o.delete();
    return keep ? got : null;
  }
  for (const inp of inputs) {
    const got = await once(inp, true);
    for (let k = 0; k < got.length; k++) {
      const d = outDetails[k];
      await postOutput(job, inp.source, d.name, d.dtype, Array.from(d.shape), got[k]);
    }
  }
  await post('/job', {job: job.id, status: 'progress', step: 'timing'});   // a slow GPU is not a hang
  const tGolden = performance.now();
  const ms = [];
  // the golden runs above were the warm-up (the first run compiles and allocates)
  for (let i = 0; i < (soft ? 0 : plan.runs); i++) {
    const t0 = performance.now();
    await once(inputs[0], false);
    ms.push(performance.now() - t0);
  }
  model.delete && model.delete();
  const phases_ms = {load: tLoad - t0, golden_runs: tGolden - tLoad, timing: performance.now() - tGolden};
  return {status: 'ran', latency_ms: ms.length ? median(ms) : null, latency_runs_ms: ms, sources: inputs.map((i) => i.source), phases_ms};
}

// ---------------------------------------------------------------- MediaPipe Tasks Vision

let fileset = null;

function imageData(rgb, w, h) {
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let i = 0, j = 0; i < w * h; i++, j += 3) {
    rgba[4 * i] = rgb[j]; rgba[4 * i + 1] = rgb[j + 1]; rgba[4 * i + 2] = rgb[j + 2]; rgba[4 * i + 3] = 255;
  }
  return new ImageData(rgba, w, h);
}

async function runMediaPipe(plan, job, soft) {
  fileset = fileset || await FilesetResolver.forVisionTasks('/node_modules/@mediapipe/tasks-vision/wasm');
  let seg;
  const t0 = performance.now();
  try {
    seg = await ImageSegmenter.createFromOptions(fileset, {
      baseOptions: {modelAssetPath: job.url, delegate: job.backend.toUpperCase()},
      runningMode: 'IMAGE', outputCategoryMask: true, outputConfidenceMasks: job.confidence});
  } catch (e) {
    return {status: 'no-load', message: String(e && e.message || e)};
  }
  const tLoad = performance.now();
  const images = [];
  for (const img of soft ? job.images.slice(0, 1) : job.images) {
    images.push({source: img.source, data: imageData(await fetchBytes(img.url), img.width, img.height)});
  }
  for (const img of images) {
    const res = seg.segment(img.data);
    const cat = res.categoryMask;
    await postOutput(job, img.source, 'category_mask', 'uint8', [cat.height, cat.width], cat.getAsUint8Array());
    const confs = res.confidenceMasks || [];
    if (confs.length) {
      // channels last, like the model's own output: [h, w, classes]
      const h = confs[0].height, w = confs[0].width, c = confs.length;
      const hwc = new Float32Array(h * w * c);
      confs.forEach((m, k) => { const a = m.getAsFloat32Array(); for (let i = 0; i < h * w; i++) hwc[i * c + k] = a[i]; });
      await postOutput(job, img.source, 'confidence_masks', 'float32', [h, w, c], hwc);
    }
    res.close();
  }
  await post('/job', {job: job.id, status: 'progress', step: 'timing'});   // a slow GPU is not a hang
  const tGolden = performance.now();
  const ms = [];
  const once = () => { const r = seg.segment(images[0].data); r.categoryMask.getAsUint8Array(); r.close(); };
  // the golden runs above were the warm-up (the first run compiles and allocates)
  for (let i = 0; i < (soft ? 0 : plan.runs); i++) {
    const t0 = performance.now();
    once();
    ms.push(performance.now() - t0);
  }
  const labels = seg.getLabels();
  seg.close();
  const phases_ms = {load: tLoad - t0, golden_runs: tGolden - tLoad, timing: performance.now() - tGolden};
  return {status: 'ran', latency_ms: ms.length ? median(ms) : null, latency_runs_ms: ms, labels, sources: images.map((i) => i.source),
          phases_ms};
}

// ---------------------------------------------------------------- main

async function main() {
  const plan = await (await fetch('/plan.json')).json();
  const env = await environment();
  await post('/env', env);
  document.getElementById('summary').textContent = `${plan.bundle}: ${plan.jobs.length} runs to make`;
  if (plan.jobs.some((j) => j.runtime === 'litert.js')) await loadLiteRt('/node_modules/@litertjs/core/wasm/');
  for (const job of plan.jobs) {
    window.currentJob = job.id;
    await post('/job', {job: job.id, status: 'started'});
    log(`${job.file} on ${job.runtime} ${job.backend}…`);
    let result;
    try {
      if (job.backend === 'webgpu' && !env.webgpu_adapter) {
        result = {status: 'not-run', message: `this browser offers no WebGPU adapter${env.webgpu_error ? ': ' + env.webgpu_error : ''}`};
      } else {
        const fault = maybeFault(plan, job);
        if (fault) await fault;
        const soft = isSoftware(env, job);
        result = await (job.runtime === 'litert.js' ? runLiteRt(plan, job, soft) : runMediaPipe(plan, job, soft));
        result.software = soft;
      }
    } catch (e) {
      result = {status: 'error', message: String(e && (e.stack || e.message) || e)};
    }
    await post('/job', {job: job.id, ...result});
    log(`  ${result.status}${result.latency_ms ? ` ${result.latency_ms.toFixed(1)} ms` : ''}${result.message ? ': ' + result.message : ''}`,
        result.status === 'ran' ? 'pass' : 'fail');
  }
  window.currentJob = null;
  await post('/done', {});
  document.getElementById('summary').textContent = `${plan.bundle}: done; the verdicts are on the computer that served this page`;
}

main().catch((e) => reportPageError(e && (e.stack || e.message) || e));
