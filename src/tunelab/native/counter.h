/* The counter-based generator of tunelab's dropout masks (included by each .c file that draws
 * or recomputes a mask): 64-bit word k of a mask is splitmix64(seed + (k + 1) * golden), read
 * as four 16-bit lanes (little-endian: lane j of word k belongs to element 4k + j), and an
 * element is kept when its lane is at least round(p * 65536). A mask is a pure function of
 * (seed, element index): the same for any thread count, and recomputed from the seed by the
 * backward pass instead of being stored. */
#ifndef TUNELAB_COUNTER_H
#define TUNELAB_COUNTER_H
#include <stdint.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* word k of the mask of `seed` */
static inline uint64_t mask_word(uint64_t seed, uint64_t k) { return mix(seed + (k + 1) * GOLDEN); }

#endif
