/*
 * stream_triad_ref.c: a plain STREAM-style triad, the peer the CPU backend's bench.mem.triad is
 * compared against. Deliberately classic: OpenMP static schedule, arrays first-touched by the
 * same threads in the same schedule, the compiler's own code for a[j] = b[j] + scalar*c[j]
 * (built with -O3 -march=native -fopenmp), best of NTIMES passes, STREAM's byte counting
 * (3 arrays x 8 bytes per element).
 *
 * usage: cpn-bench-stream-triad-ref [-b BYTES_PER_ARRAY] [-n NTIMES]
 *   BYTES_PER_ARRAY defaults to 4x the last-level cache (sysfs), at least 64 MiB, as in
 *   bench.mem.triad; suffixes K, M, G (binary) accepted. Threads: OMP_NUM_THREADS.
 */
#include <float.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t parse_size(const char* s) {
    char* end = NULL;
    uint64_t v = strtoull(s, &end, 10);
    if (end != NULL && (*end == 'K' || *end == 'k')) v <<= 10;
    if (end != NULL && (*end == 'M' || *end == 'm')) v <<= 20;
    if (end != NULL && (*end == 'G' || *end == 'g')) v <<= 30;
    return v;
}

static uint64_t llc_bytes(void) {
    uint64_t best = 0;
    int best_level = 0;
    for (int i = 0; i < 16; ++i) {
        char path[128], buf[64];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE* f = fopen(path, "r");
        if (f == NULL) continue;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(buf, sizeof buf, f) == NULL) buf[0] = '\0';
        fclose(f);
        uint64_t v = parse_size(buf);
        if (level > best_level || (level == best_level && v > best)) {
            best_level = level;
            best = v;
        }
    }
    return best;
}

int main(int argc, char** argv) {
    uint64_t bytes = 0;
    int ntimes = 20;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-b") == 0 && i + 1 < argc) {
            bytes = parse_size(argv[++i]);
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            ntimes = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [-b BYTES_PER_ARRAY] [-n NTIMES]\n", argv[0]);
            return 2;
        }
    }
    if (bytes == 0) {
        bytes = 4 * llc_bytes();
        if (bytes < (64ull << 20)) bytes = 64ull << 20;
    }
    if (ntimes < 2) ntimes = 2;
    const size_t n = (size_t)(bytes / sizeof(double));
    double* a = aligned_alloc(64, (n * sizeof(double) + 63) / 64 * 64);
    double* b = aligned_alloc(64, (n * sizeof(double) + 63) / 64 * 64);
    double* c = aligned_alloc(64, (n * sizeof(double) + 63) / 64 * 64);
    if (a == NULL || b == NULL || c == NULL) {
        fprintf(stderr, "cannot allocate 3 arrays of %zu bytes\n", n * sizeof(double));
        return 1;
    }
    const double scalar = 3.0;
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++) {
        a[j] = 1.0;
        b[j] = 2.0;
        c[j] = 0.0;
    }
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++) c[j] = 0.5 * a[j] + (double)(j & 7);

    double best = DBL_MAX, sum = 0;
    for (int k = 0; k < ntimes; ++k) {
        const double t0 = now_s();
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++) a[j] = b[j] + scalar * c[j];
        const double t = now_s() - t0;
        if (k > 0) {  /* the first pass is warm-up, as in STREAM */
            if (t < best) best = t;
            sum += t;
        }
    }
    /* Check, so the loop cannot be dropped: a[j] = 2 + 3 * (0.5 + (j & 7)). */
    for (size_t j = 0; j < n; j += 4099) {
        const double want = 2.0 + scalar * (0.5 + (double)(j & 7));
        if (a[j] != want) {
            fprintf(stderr, "check failed: a[%zu] = %.17g, expected %.17g\n", j, a[j], want);
            return 1;
        }
    }
    const double moved = 3.0 * (double)n * sizeof(double);
    printf("threads %d, array %zu bytes (x3), best of %d\n", omp_get_max_threads(),
           n * sizeof(double), ntimes - 1);
    printf("Triad: best %.1f MB/s  avg %.1f MB/s  min time %.6f s\n", moved / best / 1e6,
           moved / (sum / (ntimes - 1)) / 1e6, best);
    free(a);
    free(b);
    free(c);
    return 0;
}
