// peak.hpp: the theoretical peak of one benchmark figure, computed from the discovered specs
// (cores x clock x SIMD lanes x FMA units x 2, or the GPU's units x clock), with the source of
// every input, so that a measured figure can be shown beside the physical limit it cannot pass.
#pragma once

#include <string>
#include <vector>

#include "inventory/device.hpp"

namespace cpn::bench {

/* One factor of a peak and where it came from ("cpu.cores: hwloc", "uarch table: Zen 4"). */
struct PeakInput {
    std::string name;
    double value = 0;
    std::string unit;
    std::string source;
};

struct Peak {
    bool known = false;
    double value = 0;            // in the figure's unit per second (FLOP/s, byte/s)
    std::string formula;         // "cores x MHz x FLOP/cycle/core"
    std::vector<PeakInput> inputs;
    std::string reason;          // why it is unknown
    double clock_mhz = 0;        // the clock it is computed at (0: no clock input, e.g. memory)
    bool clock_measured = true;  // false: the clock input is a discovered nominal figure, which
                                 // boost clocks may exceed (judge "above the peak" loosely)
};

/* Per-core issue rates of one CPU micro-architecture, per cycle. */
struct CpuUarch {
    std::string name;            // "Zen 4", "Sapphire Rapids", "Neoverse N1", "generic AVX2"
    double fp64_flops = 0;       // vector FMA peak, FLOP per cycle per core
    double fp32_flops = 0;
    double fp16_flops = 0;       // native fp16 arithmetic (AVX512-FP16, ARM FP16); 0: none
    double bf16_flops = 0;       // vector bf16 dot products (AVX512_BF16)
    double int8_ops = 0;         // vector int8 dot products (VNNI, SDOT)
    double mm_bf16_flops = 0;    // matrix unit (AMX)
    double mm_int8_ops = 0;
    std::string source;          // why these numbers ("vendor optimisation manual: ...")
    bool assumed = false;        // not a known micro-architecture: a conservative guess
};

/* The micro-architecture table entry for a CPU: from the x86 vendor/family/model in the
 * device's attributes, else from the ISA list (AVX-512 / AVX2 / NEON / RVV) as a labelled guess. */
CpuUarch cpu_uarch(const Device& cpu);

/* Theoretical peak of `kind` ("bench.fp32", "bench.mem.triad", ...) on `device`.
 * `threads` is the number of cores the figure used (CPU; 0 = all); `clock_mhz` the clock
 * measured during the run (0: use the discovered maximum clock, and say so). GPU figures use
 * the attributes the CUDA plugin reports (SM count, clock, compute capability, memory bus). */
Peak theoretical_peak(const Device& device, const std::string& kind, int threads, double clock_mhz);

/* Whether a measured figure can be real. It cannot when it passes the peak at the highest clock
 * seen during its samples (a clock probe only reads low: an interrupt, a hypervisor's steal or a
 * busy hyperthread sibling slows its add chain, nothing speeds it up) by more than the
 * measurement can err: 3 % with a measured clock, 10 % on a CPU under a hypervisor (the guest's
 * CPU time and its clock probe both carry the host's noise), 60 % with a nominal clock (boost). */
struct PeakVerdict {
    bool above = false;
    double bound = 0;        // the peak at the highest clock seen, in the figure's unit per second
    double bound_clock_mhz = 0;
    double tolerance = 1;    // the factor allowed above `bound`
    std::string reason;      // when above: the figures, the clock and the tolerance
};
PeakVerdict judge_against_peak(const Device& device, const std::string& kind, int threads, double value,
                               const std::string& unit, const Peak& peak, double clock_max_mhz);

}  // namespace cpn::bench
