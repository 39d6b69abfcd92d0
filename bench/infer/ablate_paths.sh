#!/usr/bin/env bash
# ablate_paths.sh: cpn-agent's CPU inference latency with its default convolution/product paths,
# with oneDNN switched off (CPN_INFER_DNNL=off: im2col + OpenBLAS, the depthwise loop) and with
# spinning OpenMP threads (OMP_WAIT_POLICY=ACTIVE), on the models of bench_infer.py (exported
# into build/bench-models first). Prints one markdown row per model and batch: the best of 3
# invocations of `cpn-agent infer --repeat 20 --threads 2` per variant, in ms.
set -euo pipefail
cd "$(dirname "$0")/../../build"
plugins=$PWD/lib/x86_64-linux-gnu/cpn-agent/backends
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for m in resnet18 mobilenet_v2 squeezenet1_1; do
  for b in 1 8; do
    line="| $m | $b |"
    for v in default CPN_INFER_DNNL=off OMP_WAIT_POLICY=ACTIVE; do
      envs=()
      [[ $v == default ]] || envs=("$v")
      best=""
      for _ in 1 2 3; do
        env "${envs[@]}" ./bin/cpn-agent infer -m "bench-models/$m.onnx" -i "input=bench-models/input-b$b.npy" --json \
          --repeat 20 --threads 2 -o "$out" --plugin-dir "$plugins" >"$out/m.json"
        best=$(python3 -c "import json,sys; t=json.load(open('$out/m.json'))['run_s']*1e3; b='$best'; print(round(min(t, float(b)) if b else t, 2))")
      done
      line="$line $best |"
    done
    echo "$line"
  done
done
