// CLIP encoder inference in ONNX Runtime (onnxruntime-node, CPU execution
// provider, fp32), the peer of bench_clip's one-workload mode, on the graphs
// bench/clip_torch.py --export writes (the same random weights and inputs).
//     node bench/clip_ort.mjs DIR b32|b16|text|rn50 [REPS]
// prints one line: items/s of each timed repetition (one untimed warm-up
// first) and the process's peak RSS. Threads: CLIPTUNE_THREADS or 2,
// sequential execution, all graph optimisations on.
import path from 'node:path';
import { createRequire } from 'node:module';

const [dir, workload, repsArg] = process.argv.slice(2);
const require = createRequire(path.join(process.env.CT_ORT_PREFIX || dir, 'package.json'));
const ort = require('onnxruntime-node');
const reps = Number(repsArg || 3);
const threads = Number(process.env.CLIPTUNE_THREADS || 2);
const batch = workload === 'text' ? 100 : 32;

const session = await ort.InferenceSession.create(path.join(dir, `${workload}.onnx`), {
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});

let x;
if (workload === 'text') {
  const ids = new BigInt64Array(batch * 77);
  for (let i = 0; i < batch; i++) { // the same prompts as bench_clip
    ids[i * 77] = 49406n;
    for (let k = 1; k < 12; k++) ids[i * 77 + k] = BigInt(320 + k + i);
    ids[i * 77 + 12] = 49407n;
  }
  x = new ort.Tensor('int64', ids, [batch, 77]);
} else {
  const px = new Float32Array(batch * 3 * 224 * 224);
  let s = 1;
  for (let i = 0; i < px.length; i++) { // any values: the cost does not depend on them
    s = (s * 1103515245 + 12345) >>> 0;
    px[i] = s / 2 ** 31 - 1;
  }
  x = new ort.Tensor('float32', px, [batch, 3, 224, 224]);
}

const rates = [];
for (let r = 0; r <= reps; r++) {
  const t0 = process.hrtime.bigint();
  await session.run({ x });
  const s = Number(process.hrtime.bigint() - t0) * 1e-9;
  if (r) rates.push((batch / s).toFixed(3));
}
const rss = process.resourceUsage().maxRSS / 1024;
console.log(`result engine=onnxruntime workload=${workload} batch=${batch} ` +
            `rss_mb=${rss.toFixed(0)} per_s=${rates.join(',')}`);
