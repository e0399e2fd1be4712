/* The element-wise chain of attention in one pass per row, for bf16 scores on AVX-512:
 *
 *   forward:  P = softmax(S * scale + M) (over the last dim), D = dropout(P)
 *   backward: dS = scale * P * (dD' - sum(dD' * P)), where dD' = dropout(dD) (the same mask)
 *
 * PyTorch runs this as four operators forward (mul, add, softmax, dropout) and four backward,
 * each a pass over the map and each with a per-row overhead that dominates on the short rows
 * of a length-grouped batch (27-80 keys): its bf16 softmax of a 32 x 12 x 27 x 27 map takes
 * about 0.9 ms on the 2-core Xeon. Here a row is loaded once into float32 registers, the
 * masked tail of the last 16 lanes is handled by AVX-512 lane masks instead of a scalar loop,
 * and exp is a polynomial (Cephes' expf, relative error about 2e-7, far below bf16's 4e-3).
 * The arithmetic is float32 from the bf16 scores to the bf16 outputs (no bf16 rounding
 * between the scale, the mask and the softmax, which PyTorch's chain has).
 *
 * The dropout mask is the one tunelab's dropout kernels draw for the same seed (counter.h):
 * element i of the row-major map is kept when its 16-bit lane is at least `threshold`, and a
 * kept value is bf16(bf16(P) * keep_scale), as dropout_bf16 computes it from a bf16 P.
 *
 * Layouts: S, P, D, dD and dS are contiguous [rows, n]; row r of the additive mask M starts at
 * M + (r / (heads * q)) * mb + (r / q % heads) * mh + (r % q) * mq (element strides; its last
 * dim contiguous; mb = mh = mq = 0 and M = NULL for no mask). Without AVX-512 (BW, VL, DQ)
 * the functions are not compiled and attention_chain_available() returns 0: the caller keeps
 * PyTorch's operators.
 */
#include <stdint.h>
#include <string.h>

#include "counter.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include "avx512.h"

int attention_chain_available(void) { return 1; }

#define MAX_KEYS 8192 /* longer rows: the caller keeps PyTorch's operators */

/* the 16-bit lanes of elements first .. first + n - 1 of the mask of `seed`, into `out`
 * (which must hold n + 8 lanes); returns where element `first`'s lane is */
static inline const uint16_t *row_lanes(uint64_t seed, int64_t first, int64_t n, uint64_t *out) {
    int64_t w0 = first / 4, w1 = (first + n - 1) / 4;
    for (int64_t w = w0; w <= w1; w++) out[w - w0] = mask_word(seed, (uint64_t)w);
    return (const uint16_t *)out + (first - 4 * w0);
}

static inline int threads_for(int64_t elements, int threads) {
    return elements < 32768 ? 1 : threads;
}

/* forward; D may be NULL (no dropout: p = 0, or not training) */
void attention_chain_fwd(const uint16_t *S, const uint16_t *M, int64_t mb, int64_t mh,
                         int64_t mq, int64_t heads, int64_t q, int64_t rows, int64_t n,
                         float scale, uint16_t *P, uint16_t *D, uint64_t seed,
                         uint32_t threshold, float keep_scale, int threads) {
    __m256i thr = _mm256_set1_epi16((short)(uint16_t)threshold);
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * n, threads))
    for (int64_t r = 0; r < rows; r++) {
        float x[MAX_KEYS];
        uint64_t words[MAX_KEYS / 4 + 4];
        const uint16_t *s = S + r * n;
        const uint16_t *m = M ? M + (r / (heads * q)) * mb + (r / q % heads) * mh + (r % q) * mq
                              : NULL;
        __m512 vmax = _mm512_set1_ps(-__builtin_inff());
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 v = _mm512_mul_ps(load16(s + j, t), _mm512_set1_ps(scale));
            if (m) v = _mm512_add_ps(v, load16(m + j, t));
            _mm512_mask_storeu_ps(x + j, t, v);
            vmax = _mm512_mask_max_ps(vmax, t, vmax, v);
        }
        __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        __m512 vsum = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + j), mx));
            e = _mm512_maskz_mov_ps(t, e);
            _mm512_mask_storeu_ps(x + j, t, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
        uint16_t *p = P + r * n;
        const uint16_t *lane = D ? row_lanes(seed, r * n, n, words) : NULL;
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + j), inv);
            store16(p + j, v, t);
            if (D) {
                __mmask16 keep = _mm256_mask_cmpge_epu16_mask(
                    t, _mm256_maskz_loadu_epi16(t, lane + j), thr);
                __m512 d = _mm512_maskz_mul_ps(keep, round_bf16(v), _mm512_set1_ps(keep_scale));
                store16(D + r * n + j, d, t);
            }
        }
    }
}

/* backward: dS from dD (the gradient of D, or of P when there was no dropout: seed unused)
 * and P */
void attention_chain_bwd(const uint16_t *dD, const uint16_t *P, int64_t rows, int64_t n,
                         float scale, int dropped, uint64_t seed, uint32_t threshold,
                         float keep_scale, uint16_t *dS, int threads) {
    __m256i thr = _mm256_set1_epi16((short)(uint16_t)threshold);
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * n, threads))
    for (int64_t r = 0; r < rows; r++) {
        float g[MAX_KEYS];
        uint64_t words[MAX_KEYS / 4 + 4];
        const uint16_t *gd = dD + r * n, *p = P + r * n;
        const uint16_t *lane = dropped ? row_lanes(seed, r * n, n, words) : NULL;
        __m512 vdot = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 v = load16(gd + j, t);
            if (dropped) {
                __mmask16 keep = _mm256_mask_cmpge_epu16_mask(
                    t, _mm256_maskz_loadu_epi16(t, lane + j), thr);
                v = _mm512_maskz_mul_ps(keep, v, _mm512_set1_ps(keep_scale));
            }
            _mm512_mask_storeu_ps(g + j, t, v);
            vdot = _mm512_fmadd_ps(v, load16(p + j, t), vdot);
        }
        __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(vdot));
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(t, g + j), dot);
            v = _mm512_mul_ps(_mm512_mul_ps(v, load16(p + j, t)), _mm512_set1_ps(scale));
            store16(dS + r * n + j, v, t);
        }
    }
}

#else /* no AVX-512: PyTorch's operators */

int attention_chain_available(void) { return 0; }

void attention_chain_fwd(const uint16_t *S, const uint16_t *M, int64_t mb, int64_t mh,
                         int64_t mq, int64_t heads, int64_t q, int64_t rows, int64_t n,
                         float scale, uint16_t *P, uint16_t *D, uint64_t seed,
                         uint32_t threshold, float keep_scale, int threads) {}

void attention_chain_bwd(const uint16_t *dD, const uint16_t *P, int64_t rows, int64_t n,
                         float scale, int dropped, uint64_t seed, uint32_t threshold,
                         float keep_scale, uint16_t *dS, int threads) {}

#endif
