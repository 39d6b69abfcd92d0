// cpu_infer.hpp: the CPU backend's inference extension (cpn_infer.h): segments run on the
// operators of workloads/infer (OpenBLAS for the heavy ones), in this process's threads.
#pragma once

#include "cpn_bench.h"
#include "cpn_infer.h"

namespace cpn::cpuinfer {

const cpn_infer_api* api();

/* infer.bench: the capacity suite's task-level reference (task.infer, docs/capacity.md). The
 * blob is an ONNX model; params {"batch": N (1..1024), "seed": S, "threads": T, "reps": R}.
 * Each repetition runs the model once on a batch of N fixed pseudo-random inputs; ops =
 * inferences (N per repetition); the check: every output finite and the same as the first
 * repetition's. A "reps" input buffer overrides reps per run (cpn_bench.h). */
struct Bench;
bool is_bench_kind(const char* kind);
cpn_status bench_prepare(const cpn_workload* w, Bench** out, cpn_msg* err);
cpn_status bench_run(Bench* b, cpn_run_io* io, const cpn_run_control* ctl, cpn_msg* err);
void bench_release(Bench* b);

}  // namespace cpn::cpuinfer
