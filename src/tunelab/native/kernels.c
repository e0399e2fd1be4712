/* tunelab's CPU kernels, compiled on first use by tunelab/native/__init__.py (plain C, no
 * PyTorch headers: it builds in about a second) and called through ctypes on tensors'
 * memory. Each kernel is a loop the compiler vectorises for the machine it runs on
 * (-O3 -march=native) and OpenMP splits over the threads PyTorch uses.
 *
 * Dropout masks come from the counter-based generator of counter.h: element i is kept when
 * lane i of the mask's words is at least `threshold` (= round(p * 65536)).
 */
#include <stdint.h>
#include <string.h>

#include "bf16.h"
#include "counter.h"
#include "threads.h"

/* The lanes of block b (BLOCK elements from b * BLOCK) of a mask: words are drawn in a
 * loop of their own and then read as 16-bit lanes, so both loops vectorise. */
#define BLOCK 1024
static inline void lanes(uint64_t seed, int64_t block, uint16_t *out) {
    uint64_t words[BLOCK / 4];
    uint64_t first = (uint64_t)block * (BLOCK / 4);
    for (int k = 0; k < BLOCK / 4; k++) words[k] = mask_word(seed, first + (uint64_t)k);
    memcpy(out, words, sizeof words);
}

#define MASK_LOOP(KEEP, DROP)                                                                  \
    int64_t blocks = (n + BLOCK - 1) / BLOCK;                                                  \
    _Pragma("omp parallel for schedule(static) num_threads(threads_for(n, threads))")            \
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
