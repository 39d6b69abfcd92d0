/*
 * rng.h: counter-based random numbers. Every number is a hash of (seed, pixel, sample) and a
 * per-path counter, so a sample's path depends on nothing but those: the same on every device,
 * in any tile, in any order of execution.
 */
#ifndef CPN_RENDER_RNG_H
#define CPN_RENDER_RNG_H

#include "compat.h"

/* Chris Wellons' lowbias32: a full-avalanche 32-bit integer hash. */
CPN_DEVICE cpn_u32 cpn_hash32(cpn_u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

typedef struct cpn_rng {
    cpn_u32 key;
    cpn_u32 counter;
} cpn_rng;

CPN_DEVICE cpn_rng cpn_rng_make(cpn_u32 seed, cpn_u32 pixel, cpn_u32 sample) {
    cpn_rng r;
    r.key = cpn_hash32(seed ^ cpn_hash32(pixel ^ cpn_hash32(sample + 0x9e3779b9u)));
    r.counter = 0u;
    return r;
}

/* A float in [0, 1) with 24 random bits. */
CPN_DEVICE float cpn_rng_next(cpn_rng* r) {
    const cpn_u32 h = cpn_hash32(r->key ^ cpn_hash32(r->counter * 0x85ebca6bu + 0xc2b2ae35u));
    r->counter += 1u;
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

#endif /* CPN_RENDER_RNG_H */
