/*
 * cpn_bench.h: the benchmark workloads ("bench.*" kinds) every backend may implement through
 * the ordinary execution half of cpn_backend.h (query -> prepare -> run -> release).
 *
 * The split of work: a plugin runs ONE timed sample per run() call, on data it prepared, and
 * verifies the result (a benchmark whose result is optimised away measures nothing). The core
 * (agent/bench/) does everything statistical: calibration, warm-up, repeated samples, median,
 * coefficient of variation, throttled-sample rejection, theoretical peaks and normalisation.
 *
 * Kinds (a plugin that does not implement one answers query() with supported = 0 and a reason,
 * e.g. "device has no fp64 units" or "bench.mm.int8: no matrix unit on this device"):
 *
 *   compute, vector units (ops = floating-point operations; one FMA counts 2):
 *     bench.fp64  bench.fp32  bench.fp16  bench.bf16
 *   compute, vector integer dot product (ops = integer operations; one 8-bit MAC counts 2):
 *     bench.int8
 *   compute, matrix units (tensor cores, AMX, XMX) (ops as above):
 *     bench.mm.fp16  bench.mm.bf16  bench.mm.tf32  bench.mm.int8
 *   device memory, STREAM-style, over three arrays of "bytes" bytes each (ops = bytes moved,
 *   counted as STREAM does: copy c=a moves 2 arrays, triad a=b+s*c moves 3):
 *     bench.mem.copy  bench.mem.triad
 *   host <-> device transfers of "bytes" bytes (ops = bytes); pinned = page-locked host memory:
 *     bench.xfer.h2d.pinned  bench.xfer.h2d.pageable  bench.xfer.d2h.pinned  bench.xfer.d2h.pageable
 *   dispatch latency of an empty kernel, launch to completion seen by the host (ops = launches):
 *     bench.launch
 *   CPU only: the core clock actually running, from a chain of dependent integer adds (one per
 *   cycle on every modern core) on every worker thread (ops = cycles summed over threads):
 *     bench.clock
 *
 * params_json of prepare() (every key optional; unknown keys are an error):
 *   "reps":    uint64 >= 1, how many times the unit of work is repeated in one run (default 1);
 *              the core calibrates it so that one sample lasts long enough to time well.
 *   "bytes":   uint64, size of each array for bench.mem.* / of the buffer for bench.xfer.*
 *              (the core passes at least 4x the last-level cache; the plugin refuses sizes it
 *              cannot allocate with CPN_E_OUT_OF_MEMORY and says how much it tried).
 *   "threads": uint32, CPU only: worker threads (0 = one per logical CPU the process may use,
 *              1 = a single core, to size serial work).
 *   "seed":    uint64, seed of the random data (memory kinds fill with random, not constant, data).
 *
 * run() may be given an input buffer named "reps" holding one little-endian uint64 that
 * overrides params "reps" for that call (so calibration needs no second prepare). No other
 * input or output buffers are used.
 *
 * run() writes into io->result_json one JSON object:
 *   {"ops": <double, total operations of this sample, per the unit above>,
 *    "seconds": <double, the timed region only: no allocation, compilation or verification>,
 *    "verified": true,
 *    "check": "<what was checked, e.g. 'all 16 lanes x 2 threads match the host recurrence'>",
 *    "threads": <uint, CPU only>,
 *    "clock_mhz": <double, optional: the device clock seen during the sample>,
 *    "throttled": <bool, optional: true when the device reported throttling during the sample;
 *                 the core discards such samples and counts them>,
 *    "preempted": <bool, optional: true when the plugin's own workers lost their CPU to other
 *                 processes for a significant part of a wall-clock-timed sample; discarded and
 *                 counted like throttled ones>,
 *    "detail": <object of numbers, optional: extra figures of the same sample (e.g.
 *                 "queued_to_end_s", the device's own view of a launch); the core reports the
 *                 median of each>,
 *    "wall_seconds": <double, optional: the wall time of the timed region, when "seconds" is
 *                 measured otherwise (the CPU backend times compute on its workers' CPU time)>}
 * A result that fails its check is NOT returned as a sample: run() fails with CPN_E_INTERNAL
 * and a message naming the kind, what was expected and what came back.
 *
 * Cancellation and deadline (cpn_run_control) are honoured between repetitions.
 */
#ifndef CPN_BENCH_H
#define CPN_BENCH_H

/* Version of the kinds, parameters and result fields above, of the task-level reference jobs
 * the workloads register and of how the core judges a figure (2: the render reference,
 * task.render; 3: the inference reference, task.infer; 4: "above_peak" judged at the highest
 * clock seen, with a margin for guests, so a figure cached as above_peak is measured again, and
 * a calibration that a slow first run no longer cuts short);
 * part of the capacity cache fingerprint, so a change here re-benchmarks every node. */
#define CPN_BENCH_SUITE_VERSION "4"

#define CPN_BENCH_KIND_PREFIX "bench."
#define CPN_BENCH_REPS_INPUT "reps"

#endif /* CPN_BENCH_H */
