/* tunelab's CPU kernels, compiled on first use by tunelab/native/__init__.py (plain C, no
 * PyTorch headers: it builds in about a second) and called through ctypes on tensors'
 * memory. Each kernel is a loop the compiler vectorises for the machine it runs on
 * (-O3 -march=native) and OpenMP splits over the threads PyTorch uses.
 *
 * Dropout masks come from a counter-based generator: 64-bit word k of a mask is
 * splitmix64(seed + (k + 1) * golden), read as four 16-bit lanes (little-endian: lane j is
 * bits 16j..16j+15), and element i is kept when lane i of the words is at least `threshold`
 * (= round(p * 65536)). The mask is a
 * pure function of (seed, i): it is the same for any thread count, and the backward pass
 * recomputes it from the seed instead of storing it.
 */
#include <stdint.h>
#include <string.h>

#include "bf16.h"

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define SERIAL 32768 /* elements below which one thread does it all */

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline int nthreads(int64_t n, int threads) { return n < SERIAL ? 1 : threads; }

/* The lanes of block b (BLOCK elements from b * BLOCK) of a mask: words are drawn in a
 * loop of their own and then read as 16-bit lanes, so both loops vectorise. */
#define BLOCK 1024
static inline void lanes(uint64_t seed, int64_t block, uint16_t *out) {
    uint64_t words[BLOCK / 4];
    uint64_t first = (uint64_t)block * (BLOCK / 4) + 1;
    for (int k = 0; k < BLOCK / 4; k++) words[k] = mix(seed + (first + (uint64_t)k) * GOLDEN);
    memcpy(out, words, sizeof words);
}

#define MASK_LOOP(KEEP, DROP)                                                                  \
    int64_t blocks = (n + BLOCK - 1) / BLOCK;                                                  \
    _Pragma("omp parallel for schedule(static) num_threads(nthreads(n, threads))")            \
    for (int64_t b = 0; b < blocks; b++) {                                                     \
        uint16_t lane[BLOCK];                                                                  \
        lanes(seed, b, lane);                                                                  \
        int64_t start = b * BLOCK, len = n - start < BLOCK ? n - start : BLOCK;                \
        for (int64_t j = 0; j < len; j++) {                                                    \
            int64_t i = start + j;                                                             \
            if (lane[j] >= threshold) { KEEP; } else { DROP; }                                 \
        }                                                                                      \
    }

/* dst[i] = src[i] * scale where element i is kept, else 0 (dst may be src) */
void dropout_f32(const float *src, float *dst, int64_t n, uint64_t seed, uint32_t threshold,
                 float scale, int threads) {
    MASK_LOOP(dst[i] = src[i] * scale, dst[i] = 0.0f)
}

void dropout_bf16(const uint16_t *src, uint16_t *dst, int64_t n, uint64_t seed,
                  uint32_t threshold, float scale, int threads) {
    MASK_LOOP(dst[i] = f32_to_bf16(bf16_to_f32(src[i]) * scale), dst[i] = 0)
}

/* the 0/1 mask itself as 16-bit words: `one` (the bit pattern of 1.0 in bf16 or fp16) where
 * kept, 0 elsewhere */
void keep_mask16(uint16_t *dst, int64_t n, uint64_t seed, uint32_t threshold, uint16_t one,
                 int threads) {
    MASK_LOOP(dst[i] = one, dst[i] = 0)
}
