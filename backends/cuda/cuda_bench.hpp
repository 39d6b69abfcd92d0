// cuda_bench.hpp: the "bench.*" workloads of backends/api/cpn_bench.h on CUDA devices.
//
// Kernels come from two embedded fatbins: kernels/bench.cu (every kind, all targets) and, when
// the build includes compute capability 9.0, kernels/bench_sm90a.cu (the wgmma tensor-core
// kernels, sm_90a SASS only, loaded on 9.0 devices). One run() = one timed sample of `reps`
// repetitions of a fixed unit of work, timed with CUDA events (host clock for the synchronous
// kinds: pageable transfers and launch latency), then verified against a host model.
#pragma once

#include "cpn_backend.h"

namespace cpn::cuda {

struct BenchState; /* what prepare() set up for one bench.* workload; owned by cpn_prepared */

/* True for any kind that starts with "bench." (supported or not: those answer with a reason). */
bool is_bench_kind(const char* kind);

/* The bench.* kinds this plugin implements, space-separated, for messages. */
const char* bench_kinds_text();

/* query / prepare / run for a bench.* kind, with the semantics of cpn_backend.h. The caller has
 * checked the pointers, struct sizes and that the kind is a bench kind. */
cpn_status bench_query(cpn_device_handle* device, const cpn_workload* workload,
                       cpn_query_result* out, cpn_msg* err);
cpn_status bench_prepare(cpn_device_handle* device, const cpn_workload* workload,
                         cpn_prepared** out, cpn_msg* err);
cpn_status bench_run(cpn_prepared* prepared, cpn_run_io* io, const cpn_run_control* control,
                     cpn_msg* err);

/* Frees everything prepare allocated (device and host memory, stream, events, modules). Pushes
 * the device's context itself. NULL is a no-op. */
void bench_release(BenchState* state);

}  // namespace cpn::cuda
