#!/usr/bin/python3
"""ONNX inference benchmark: a cpn-agent backend against PyTorch, same models, same input.

For each model (torchvision resnet18, mobilenet_v2, squeezenet1_1, random weights, exported by
export_models.py) and each batch size (1, 8):

  1. cpn-agent: `cpn-agent infer -m MODEL.onnx -i input=input-bB.npy --json --repeat N
     --threads T -o DIR`, N chosen from a short calibration run so that the timed runs take at
     least --min-seconds (the first run includes compilation; --repeat reports the best run, so
     latency = run_s, images/s = batch / run_s, GFLOP/s = the agent's own flops / run_s);
  2. PyTorch (the same architecture and weights, rebuilt with the same seed): torch.no_grad,
     torch.set_num_threads(T), warm-up, then best-of-N wall time over at least --min-seconds;
  3. checks cpn-agent's output against PyTorch's: max |cpn - torch| / max |torch| < 1e-3;
  4. OpenCV's DNN module (python3-opencv, when installed) on the same model and input:
     cv2.dnn.readNetFromONNX, its own CPU backend, cv2.setNumThreads(T), warm-up, best-of-N;
     a model it cannot load is reported with OpenCV's error. OpenCV gets a copy of the file
     whose Identity-of-a-constant nodes are replaced by the constant (opencv_copy: its importer
     rejects them; the computation is the same).

The machine may be shared: before each measurement the script waits (up to --max-wait s) until
other work leaves the CPUs at most --quiet-busy busy, and with --rounds R it measures each engine
R times and keeps the best; the detail table says how busy the CPUs were before measuring.

GFLOP/s is also given as a fraction of the CPU's measured fp32 peak, taken from
`cpn-agent bench --quick --json` (devices[cpu].best.fp32, or fp32.1core when T is 1) unless
--peak-gflops is given. Prints a markdown table (and with --out writes it with the machine
description and the command). The two engines never run at the same time.

--backend cuda (or opencl) runs cpn-agent on that backend's first GPU or accelerator in
`cpn-agent discover --json` (or --device ID) and PyTorch on CUDA (cuda) or the CPU (opencl):
timed with torch.cuda.synchronize() around each run, TF32 off unless --torch-tf32 (cpn-agent's
CUDA backend computes in fp32 without TF32), the peak is that device's fp32 figure, OpenCV is
left out. --fp16 (CUDA only) adds cpn-agent with --precision fp16 (float16 products on the
tensor cores, float32 tensors; the cell names the precision that ran) and PyTorch in float16
(model.half(), a float16 input), with the ratio of the two.

Usage: /usr/bin/python3 bench/infer/bench_infer.py [--models resnet18,mobilenet_v2,squeezenet1_1]
       [--batches 1,8] [--threads T] [--agent build/bin/cpn-agent]
       [--plugin-dir build/lib/x86_64-linux-gnu/cpn-agent/backends] [--model-dir build/bench-models]
       [--min-seconds 2] [--rounds 1] [--quiet-busy 0.25] [--max-wait 300] [--peak-gflops G]
       [--backend cpu|opencl|cuda] [--device ID] [--fp16] [--torch-tf32] [--out FILE]
Needs torch, torchvision and numpy (and cv2 for the OpenCV column); runs export_models.py first when a model file is missing.
"""
import argparse
import copy
import datetime
import json
import math
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

try:
    import cv2
except ImportError:  # OpenCV is an optional third column
    cv2 = None

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "bench"))
from first_device import first_device  # noqa: E402
MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_1")
TOLERANCE = 1e-3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def lscpu():
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    return info


def agent_cmd(args, *rest):
    return [args.agent, *rest, "--plugin-dir", args.plugin_dir]


def pick_device(args):
    """The device id cpn-agent runs on: None for the CPU backend, else --device or the first
    non-CPU device `cpn-agent discover --json` reaches through --backend (bench/first_device.py)."""
    if args.backend == "cpu":
        return None
    if args.device:
        return args.device
    dev, why = first_device(args.agent, args.backend, args.plugin_dir)
    if dev is None:
        sys.exit(why)
    return dev


def measured_peak(args):
    """(GFLOP/s, label) of the device's fp32 peak from `cpn-agent bench --quick --json`."""
    if args.peak_gflops:
        return args.peak_gflops, "given with --peak-gflops"
    dev = args.device_id or "cpu"
    log(f"measuring {dev}'s fp32 peak: cpn-agent bench --quick --json --device {dev}")
    p = subprocess.run(agent_cmd(args, "bench", "--quick", "--json", "--no-store", "--device", dev),
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"cpn-agent bench failed ({p.returncode}): {p.stderr.strip()[-500:]}; "
                 "give --peak-gflops")
    doc = json.loads(p.stdout)
    for d in doc.get("devices", []):
        if d.get("device_id") != dev:
            continue
        best = d.get("best", {})
        if dev != "cpu":
            if "fp32" in best:
                return best["fp32"]["value"] / 1e9, f"cpn-agent bench --quick, {dev} fp32"
            break
        key = "fp32.1core" if args.threads == 1 and "fp32.1core" in best else "fp32"
        if key in best:
            gf = best[key]["value"] / 1e9
            if key == "fp32" and args.threads < os.cpu_count():
                gf *= args.threads / os.cpu_count()
                return gf, f"cpn-agent bench --quick, cpu {key} scaled to {args.threads} threads"
            return gf, f"cpn-agent bench --quick, cpu {key}"
    sys.exit(f"cpn-agent bench --json has no {dev} fp32 figure; give --peak-gflops")


def run_agent(args, model, inp, repeat, outdir, precision="fp32"):
    cmd = agent_cmd(args, "infer", "-m", str(model), "-i", f"input={inp}", "--json",
                    "--repeat", str(repeat), "--threads", str(args.threads), "-o", str(outdir),
                    "--precision", precision)
    if args.device_id:
        cmd += ["--device", args.device_id, "--backend", args.backend]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()
        raise RuntimeError(f"exit {p.returncode}: " + " | ".join(msg[-3:]))
    return json.loads(p.stdout)


def bench_agent(args, model, inp, outdir, precision="fp32"):
    """Calibrate, then one timed invocation; returns its metrics (the best of N runs)."""
    cal = run_agent(args, model, inp, 3, outdir, precision)
    n = max(3, min(10000, math.ceil(args.min_seconds / max(cal["run_s"], 1e-6))))
    m = run_agent(args, model, inp, n, outdir, precision)
    m["repeat"] = n
    return m


def build_torch(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    model.eval()
    return model


def bench_torch(model, x, min_seconds, device="cpu", half=False):
    """Best-of-N wall time, N >= 3 and the timed runs taking at least min_seconds. On CUDA the
    model and input live on the GPU (float16 with half) and each timed run ends with
    torch.cuda.synchronize(); the output comes back as float32 on the host. The float16 run
    works on a copy of the model: rounding the caller's weights to float16 and back would change
    every later float32 run."""
    t = torch.from_numpy(x)
    if half:
        model = copy.deepcopy(model)
    if device != "cpu":
        model = model.to(device)
        t = t.to(device)
    if half:
        model, t = model.half(), t.half()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        y = model(t)                       # warm-up (oneDNN primitive creation, allocation)
        model(t)
        sync()
        best, n, start = math.inf, 0, time.perf_counter()
        while n < 3 or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            model(t)
            sync()
            best = min(best, time.perf_counter() - t0)
            n += 1
    if device != "cpu" and not half:
        model.to("cpu")  # nn.Module.to moved the caller's model
    return best, n, y.float().cpu().numpy()


def opencv_copy(model_path):
    """The model as OpenCV 4.6 can import it: PyTorch's exporter turns equal constants (the zero
    biases of random-weight convolutions after folding BatchNormalization) into one initializer
    plus Identity nodes, and OpenCV's importer rejects an Identity of an initializer. The copy
    (MODEL-opencv.onnx beside the model) replaces each such Identity by a copy of the constant:
    the same computation."""
    import onnx
    out = model_path.with_name(model_path.stem + "-opencv.onnx")
    if out.exists() and out.stat().st_mtime >= model_path.stat().st_mtime:
        return out
    m = onnx.load(str(model_path))
    inits = {i.name: i for i in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(out))
    return out


def bench_opencv(model_path, x, min_seconds, threads):
    """OpenCV DNN: best-of-N wall time as bench_torch; raises when OpenCV cannot load or run it."""
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(str(opencv_copy(model_path)))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(x)
    y = net.forward()                      # warm-up (layer set-up, allocation)
    best, n, start = math.inf, 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < min_seconds:
        net.setInput(x)
        t0 = time.perf_counter()
        net.forward()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best, n, y


def cpu_busy(seconds=0.5):
    """Fraction of all CPUs busy (not idle or iowait) over the next `seconds`."""
    def sample():
        f = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until other work leaves the CPUs at most `limit` busy."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        log(f"  CPUs {100 * busy:.0f} % busy with other work; waiting")
        time.sleep(5)
        busy = cpu_busy()
    return busy


def fmt(v, digits=1):
    return f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--agent", default=str(REPO / "build" / "bin" / "cpn-agent"))
    ap.add_argument("--plugin-dir",
                    default=str(REPO / "build" / "lib" / "x86_64-linux-gnu" / "cpn-agent" / "backends"))
    ap.add_argument("--model-dir", default=str(REPO / "build" / "bench-models"))
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure each engine this many times (alternating) and keep the best")
    ap.add_argument("--quiet-busy", type=float, default=0.25,
                    help="before each measurement wait until the CPUs are at most this busy")
    ap.add_argument("--max-wait", type=float, default=300,
                    help="... but wait at most this many seconds (then measure anyway)")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="the CPU's fp32 peak in GFLOP/s (default: measure it with cpn-agent bench)")
    ap.add_argument("--backend", default="cpu", choices=("cpu", "opencl", "cuda"),
                    help="the cpn-agent backend to run the models on")
    ap.add_argument("--device", default=None,
                    help="the device id (default: the backend's first GPU or accelerator)")
    ap.add_argument("--fp16", action="store_true",
                    help="also time cpn-agent --precision fp16 and PyTorch in float16 on CUDA (--backend cuda)")
    ap.add_argument("--torch-tf32", action="store_true",
                    help="let PyTorch use TF32 for fp32 convolutions and matrix products on CUDA")
    ap.add_argument("--out", default=None, help="also write the table and the machine here (markdown)")
    args = ap.parse_args()
    if args.fp16 and args.backend != "cuda":
        ap.error("--fp16 needs --backend cuda")
    tdev = "cuda" if args.backend == "cuda" else "cpu"
    if tdev == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--backend cuda: this PyTorch sees no CUDA device "
                     f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        torch.backends.cuda.matmul.allow_tf32 = args.torch_tf32
        torch.backends.cudnn.allow_tf32 = args.torch_tf32
    use_cv = cv2 is not None and args.backend == "cpu"
    args.device_id = pick_device(args)
    if args.device_id:
        log(f"cpn-agent runs on {args.device_id} through {args.backend}; PyTorch on {tdev}")

    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",") if b]
    mdir = pathlib.Path(args.model_dir)
    need = [mdir / f"{m}.onnx" for m in models] + [mdir / f"input-b{b}.npy" for b in batches] + \
           [mdir / f"{m}-b{b}-torch-output.npy" for m in models for b in batches]
    if not all(p.exists() for p in need):
        log(f"exporting the models into {mdir}")
        subprocess.run([sys.executable, str(HERE / "export_models.py"), str(mdir),
                        "--models", ",".join(models), "--batches", ",".join(map(str, batches))],
                       check=True)

    torch.set_num_threads(args.threads)
    peak, peak_src = measured_peak(args)
    log(f"fp32 peak: {peak:.1f} GFLOP/s ({peak_src})")
    load_before = os.getloadavg()

    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="cpn-bench-infer-") as tmp:
        for name in models:
            tmodel = build_torch(name)
            for b in batches:
                inp = mdir / f"input-b{b}.npy"
                x = np.load(inp)
                ref = np.load(mdir / f"{name}-b{b}-torch-output.npy")
                row = {"model": name, "batch": b}
                outdir = pathlib.Path(tmp) / f"{name}-b{b}"
                outdir.mkdir()
                busy_seen = []
                for rnd in range(args.rounds):
                    if "error" in row:
                        break
                    busy_seen.append(wait_quiet(args.quiet_busy, args.max_wait))
                    log(f"{name} batch {b}: cpn-agent (round {rnd + 1}/{args.rounds})")
                    try:
                        m = bench_agent(args, mdir / f"{name}.onnx", inp, outdir)
                        if "agent" not in row or m["run_s"] < row["agent"]["run_s"]:
                            row["agent"] = m
                    except Exception as e:  # a failed model is a result: report it, go on
                        row["error"] = str(e)
                        problems.append(f"{name} batch {b}: cpn-agent failed: {e}")
                        log(f"  FAILED: {e}")
                        break
                if "agent" in row:
                    m = row["agent"]
                    y = np.load(outdir / "output.npy")
                    if y.shape != ref.shape:
                        row["diff"] = math.inf
                        problems.append(f"{name} batch {b}: cpn-agent output shape {y.shape}, "
                                        f"PyTorch {ref.shape}")
                    else:
                        row["diff"] = float(np.max(np.abs(y.astype(np.float64) - ref)) /
                                            np.max(np.abs(ref)))
                        if not row["diff"] < TOLERANCE:
                            problems.append(f"{name} batch {b}: max rel diff {row['diff']:.2e} "
                                            f">= {TOLERANCE:g}")
                    if m.get("fallback_nodes"):
                        problems.append(f"{name} batch {b}: {m['fallback_nodes']} fallback nodes "
                                        f"({', '.join(m.get('fallback_ops', []))})")
                if args.fp16 and "error" not in row:
                    for rnd in range(args.rounds):
                        log(f"{name} batch {b}: cpn-agent --precision fp16 (round {rnd + 1}/{args.rounds})")
                        try:
                            m = bench_agent(args, mdir / f"{name}.onnx", inp, outdir, "fp16")
                        except Exception as e:
                            row["error16"] = str(e)
                            problems.append(f"{name} batch {b}: cpn-agent --precision fp16 failed: {e}")
                            break
                        if "agent16" not in row or m["run_s"] < row["agent16"]["run_s"]:
                            row["agent16"] = m
                            y = np.load(outdir / "output.npy")
                            row["diff16"] = (float(np.max(np.abs(y.astype(np.float64) - ref)) / np.max(np.abs(ref)))
                                             if y.shape == ref.shape else math.inf)
                for rnd in range(args.rounds):
                    busy_seen.append(wait_quiet(args.quiet_busy, args.max_wait))
                    log(f"{name} batch {b}: PyTorch (round {rnd + 1}/{args.rounds})")
                    best, n, y_t = bench_torch(tmodel, x, args.min_seconds, tdev)
                    if "torch_s" not in row or best < row["torch_s"]:
                        row["torch_s"], row["torch_n"] = best, n
                    if args.fp16:
                        log(f"{name} batch {b}: PyTorch float16 (round {rnd + 1}/{args.rounds})")
                        best, n, y_h = bench_torch(tmodel, x, args.min_seconds, tdev, half=True)
                        if "half_s" not in row or best < row["half_s"]:
                            row["half_s"] = best
                            row["half_diff"] = float(np.max(np.abs(y_h - ref)) / np.max(np.abs(ref)))
                if use_cv:
                    for rnd in range(args.rounds):
                        busy_seen.append(wait_quiet(args.quiet_busy, args.max_wait))
                        log(f"{name} batch {b}: OpenCV DNN (round {rnd + 1}/{args.rounds})")
                        try:
                            best, n, y_cv = bench_opencv(mdir / f"{name}.onnx", x, args.min_seconds,
                                                         args.threads)
                        except Exception as e:  # OpenCV's own limits are a result too
                            row["cv_error"] = " ".join(str(e).split())[:160]
                            log(f"  OpenCV failed: {row['cv_error']}")
                            break
                        if "cv_s" not in row or best < row["cv_s"]:
                            row["cv_s"] = best
                            row["cv_diff"] = float(np.max(np.abs(y_cv - ref)) / np.max(np.abs(ref)))
                row["busy_before"] = max(busy_seen)
                row["torch_self_diff"] = float(np.max(np.abs(y_t - ref)) / np.max(np.abs(ref)))
                if row["torch_self_diff"] > (1e-5 if tdev == "cpu" else TOLERANCE):
                    problems.append(f"{name} batch {b}: PyTorch now differs from the exported "
                                    f"reference by {row['torch_self_diff']:.2e}")
                rows.append(row)
    load_after = os.getloadavg()

    # The last columns: OpenCV's DNN module beside the CPU backend; cpn-agent and PyTorch in
    # float16 beside CUDA with --fp16; none otherwise.
    if args.backend == "cpu":
        extra_head = " OpenCV DNN latency ms | ratio (OpenCV / cpn) |"
    elif args.fp16:
        extra_head = (" cpn-agent --precision fp16 latency ms | PyTorch fp16 latency ms | "
                      "ratio (PyTorch fp16 / cpn fp16) |")
    else:
        extra_head = ""

    def extra(r, s):
        if not extra_head:
            return ""
        if args.backend == "cpu":
            if "cv_s" in r:
                cell = f"{fmt(r['cv_s'] * 1e3, 2)} (max rel diff {r['cv_diff']:.1e})"
            else:
                cell = f"cannot run it: {r['cv_error']}" if "cv_error" in r else "python3-opencv not installed"
            t = r.get("cv_s")
        else:
            a16 = r.get("agent16")
            if a16:
                mine = (f"{fmt(a16['run_s'] * 1e3, 2)} ({a16.get('precision', '?')}, max rel diff "
                        f"{r['diff16']:.1e}{'; ' + a16['precision_note'] if 'precision_note' in a16 else ''})")
            else:
                mine = f"failed: {r['error16']}" if "error16" in r else ""
            cell = f"{mine} | {fmt(r['half_s'] * 1e3, 2)} (max rel diff {r['half_diff']:.1e})"
            t = r["half_s"]
            s = a16["run_s"] if a16 else None
        return f" {cell} | {f'{t / s:.2f}x' if t and s else ''} |"

    head = ("| model | batch | cpn-agent latency ms | cpn-agent images/s | cpn-agent GFLOP/s | "
            "% of fp32 peak | PyTorch latency ms | PyTorch images/s | PyTorch GFLOP/s | "
            "ratio (PyTorch / cpn) | max rel diff |" + extra_head)
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        ts = r["torch_s"]
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | failed: {r['error']} | | | | "
                         f"{fmt(ts * 1e3, 2)} | {fmt(r['batch'] / ts)} | | | |" + extra(r, None))
            continue
        m = r["agent"]
        s = m["run_s"]
        gf = m["flops"] / s / 1e9
        gf_t = m["flops"] / ts / 1e9
        lines.append(
            f"| {r['model']} | {r['batch']} | {fmt(s * 1e3, 2)} | {fmt(r['batch'] / s)} | "
            f"{fmt(gf)} | {fmt(100 * gf / peak)} % | {fmt(ts * 1e3, 2)} | {fmt(r['batch'] / ts)} | "
            f"{fmt(gf_t)} | {ts / s:.2f}x | {r['diff']:.1e} |" + extra(r, s))
    table = "\n".join(lines)

    detail = ["| model | batch | cpn-agent GFLOP per run | runs (cpn / PyTorch) | compile s | load s | "
              "nodes (model / after optimization) | fallback nodes | optimizations | max CPU busy before |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            continue
        m = r["agent"]
        detail.append(f"| {r['model']} | {r['batch']} | {m['flops'] / 1e9:.3f} | {m['repeat']} / "
                      f"{r['torch_n']} | {m.get('compile_s', 0):.3f} | {m.get('load_s', 0):.3f} | "
                      f"{m.get('model_nodes', '')} / {m.get('nodes', '')} | "
                      f"{m.get('fallback_nodes', '')} | {m.get('optimizations', '')} | "
                      f"{100 * r['busy_before']:.0f} % |")
    detail = "\n".join(detail)

    cpu = lscpu()
    now = datetime.datetime.now(datetime.timezone.utc)
    machine = (f"Machine: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', os.cpu_count())} CPUs "
               f"({cpu.get('Thread(s) per core', '?')} thread(s) per core), "
               f"{'vm (' + cpu['Hypervisor vendor'] + ')' if 'Hypervisor vendor' in cpu else 'bare metal'}. "
               f"Date: {now:%Y-%m-%d %H:%M} UTC. Threads: {args.threads} (cpn-agent --threads, "
               f"torch.set_num_threads). fp32 peak: {peak:.1f} GFLOP/s ({peak_src}). "
               + (f"cpn-agent: {args.device_id} through {args.backend}; PyTorch on {tdev}"
                  + (f" ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, "
                     f"TF32 {'on' if args.torch_tf32 else 'off'})" if tdev == "cuda" else "") + ". "
                  if args.device_id else "") +
               f"PyTorch {torch.__version__}, torchvision {torchvision.__version__}. "
               f"Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}. "
               f"Best of {args.rounds} round(s) per engine, each >= {args.min_seconds:g} s of runs.")
    command = "/usr/bin/python3 " + " ".join(shlex.quote(a) for a in
                                             [str(pathlib.Path(sys.argv[0]))] + sys.argv[1:])
    print(machine + "\n")
    print(table + "\n")
    print(detail)
    if problems:
        print("\nProblems:\n" + "\n".join("- " + p for p in problems))
    if args.out:
        text = [f"# ONNX inference, cpn-agent {args.backend} backend against PyTorch ({tdev}), "
                f"{now:%Y-%m-%d}", "",
                machine, "", f"Command: `{command}`", "",
                f"Latency is the best single run (batch images at once); images/s = batch / "
                f"latency; GFLOP/s uses cpn-agent's own FLOP count of the model for both engines. "
                f"Ratio = PyTorch time / cpn-agent time (> 1: cpn-agent is faster). Max rel diff = "
                f"max |cpn - PyTorch| / max |PyTorch| over the output (must be < {TOLERANCE:g}).",
                "", table, "", detail, ""]
        if problems:
            text += ["Problems:", ""] + ["- " + p for p in problems] + [""]
        pathlib.Path(args.out).write_text("\n".join(text))
        log(f"wrote {args.out}")
    return 1 if any("error" in r or not r.get("diff", 1) < TOLERANCE for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
