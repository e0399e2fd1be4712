/* Attention for bf16 on AVX-512: the element-wise chain in one pass per row (attention_chain_*),
 * and, with AVX-512 BF16, the whole attention of a head in one task (attention_fused_*, below).
 *
 * The chain:
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
#include <stdlib.h>
#include <string.h>

#include "counter.h"
#include "threads.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include "avx512.h"

int attention_chain_available(void) { return 1; }

#define MAX_KEYS 8192 /* longer rows: the caller keeps PyTorch's operators */

/* the 16-bit lanes of elements first .. first + n - 1 of the mask of `seed` (counter.h), eight
 * words at a time in 64-bit vector lanes, into `out` (which must hold n / 4 + 16 words);
 * returns where element `first`'s lane is */
static inline const uint16_t *row_lanes(uint64_t seed, int64_t first, int64_t n, uint64_t *out) {
    int64_t w0 = first / 4, w1 = (first + n - 1) / 4;
    __m512i k = _mm512_add_epi64(_mm512_set1_epi64(w0 + 1), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
    for (int64_t w = w0; w <= w1; w += 8) {
        __m512i z = _mm512_add_epi64(_mm512_set1_epi64((long long)seed),
                                     _mm512_mullo_epi64(k, _mm512_set1_epi64((long long)GOLDEN)));
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 30));
        z = _mm512_mullo_epi64(z, _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 27));
        z = _mm512_mullo_epi64(z, _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
        _mm512_storeu_si512(out + (w - w0), z);
        k = _mm512_add_epi64(k, _mm512_set1_epi64(8));
    }
    return (const uint16_t *)out + (first - 4 * w0);
}

/* the softmax chain on x[0..n) (scaled and masked scores, float32; overwritten): the P row,
 * and the D row (bf16; NULL: none) with the mask's lanes when dropping (NULL: D = P) */
static inline void softmax_row(float *x, int64_t n, uint16_t *p, uint16_t *drow,
                               const uint16_t *lane, __m256i thr, float keep_scale) {
    __m512 vmax = _mm512_set1_ps(-__builtin_inff());
    for (int64_t j = 0; j < n; j += 16)
        vmax = _mm512_mask_max_ps(vmax, tail(n, j), vmax, _mm512_maskz_loadu_ps(tail(n, j), x + j));
    __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 t = tail(n, j);
        __m512 e = _mm512_maskz_mov_ps(t, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + j), mx)));
        _mm512_mask_storeu_ps(x + j, t, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 t = tail(n, j);
        __m512 v = round_bf16(_mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + j), inv));
        store16(p + j, v, t);
        if (!drow) continue;
        if (lane) {
            __mmask16 keep = _mm256_mask_cmpge_epu16_mask(t, _mm256_maskz_loadu_epi16(t, lane + j), thr);
            v = _mm512_maskz_mul_ps(keep, v, _mm512_set1_ps(keep_scale));
        }
        store16(drow + j, v, t);
    }
}

/* the chain backward on one row: dS = scale * P * (g' - sum(g' * P)), where g is the gradient
 * of the D row (bf16 at `gin`, or float32 already in g[0..n) when gin is NULL) and g' is g
 * through the row's dropout mask (lane; NULL: none). g is the float32 work row; dS goes to
 * `out` (bf16) or, when out is NULL, into g. With `drow`, the D row (float32) goes there. */
static inline void softmax_grad_row(const uint16_t *gin, float *g, const uint16_t *p, int64_t n,
                                    const uint16_t *lane, __m256i thr, float keep_scale,
                                    float scale, float *drow, uint16_t *out) {
    __m512 vdot = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 t = tail(n, j);
        __m512 gv = gin ? load16(gin + j, t) : _mm512_maskz_loadu_ps(t, g + j);
        __m512 pv = load16(p + j, t), dv = pv;
        if (lane) {
            __mmask16 keep = _mm256_mask_cmpge_epu16_mask(t, _mm256_maskz_loadu_epi16(t, lane + j), thr);
            gv = _mm512_maskz_mul_ps(keep, gv, _mm512_set1_ps(keep_scale));
            dv = round_bf16(_mm512_maskz_mul_ps(keep, pv, _mm512_set1_ps(keep_scale)));
        }
        _mm512_mask_storeu_ps(g + j, t, gv);
        if (drow) _mm512_mask_storeu_ps(drow + j, t, dv);
        vdot = _mm512_fmadd_ps(gv, pv, vdot);
    }
    __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(vdot));
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 t = tail(n, j);
        __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(t, g + j), dot);
        v = _mm512_mul_ps(_mm512_mul_ps(v, load16(p + j, t)), _mm512_set1_ps(scale));
        if (out)
            store16(out + j, v, t);
        else
            _mm512_mask_storeu_ps(g + j, t, v);
    }
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
        uint64_t words[MAX_KEYS / 4 + 16];
        const uint16_t *s = S + r * n;
        const uint16_t *m = M ? M + (r / (heads * q)) * mb + (r / q % heads) * mh + (r % q) * mq
                              : NULL;
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 v = _mm512_mul_ps(load16(s + j, t), _mm512_set1_ps(scale));
            if (m) v = _mm512_add_ps(v, load16(m + j, t));
            _mm512_mask_storeu_ps(x + j, t, v);
        }
        const uint16_t *lane = D ? row_lanes(seed, r * n, n, words) : NULL;
        softmax_row(x, n, P + r * n, D ? D + r * n : NULL, lane, thr, keep_scale);
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
        uint64_t words[MAX_KEYS / 4 + 16];
        const uint16_t *lane = dropped ? row_lanes(seed, r * n, n, words) : NULL;
        softmax_grad_row(dD + r * n, g, P + r * n, n, lane, thr, keep_scale, scale, NULL,
                         dS + r * n);
    }
}

#if defined(__AVX512BF16__)
/* ---- the whole attention of a head in one task: S = Q K^T, the chain, O = D V ----
 * Q, K, V are read where the projections left them (any batch, head and row strides, the
 * head dim contiguous), so no per-head copy is made; grouped key/value heads are shared by
 * `rep` query heads each. O is written [B, Lq, H, d] (the layout the model reshapes next),
 * P (the probabilities, for the backward pass) [B, H, Lq, Lk]. The products run on AVX-512
 * BF16 dot products (pairs of bf16 products summed in float32, as oneDNN's bf16 matmuls);
 * the backward pass accumulates in float32. d must be a multiple of 32. */
int attention_fused_available(void) { return 1; }

typedef struct {
    const uint16_t *q, *k, *v;
    int64_t qsb, qsh, qsl, ksb, ksh, ksl, vsb, vsh, vsl;
    const uint16_t *m;
    int64_t mb, mh, mq;
    int64_t B, H, rep, Lq, Lk, d;
} heads_t;

static inline uint32_t pair_at(const uint16_t *p) { uint32_t u; memcpy(&u, p, 4); return u; }

/* out[c] = sum over pairs k of w[2k] * X[k][c].lo + w[2k + 1] * X[k][c].hi for c in
 * [0, cols), cols a multiple of 32: w holds 2 * pairs bf16 (zero past its end), X is packed
 * [pairs][stride] as bf16 pairs. Q K^T rows (w a query row, pairs over the head dim, X the
 * keys) and D V rows (w a D row, pairs over the keys, X the values) are both this. */
static inline void combine_pairs(const uint16_t *w, int64_t pairs, const uint32_t *X,
                                 int64_t stride, int64_t cols, float *out) {
    for (int64_t c = 0; c < cols; c += 32) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 1 < pairs; k += 2) {
            __m512bh w0 = (__m512bh)_mm512_set1_epi32((int)pair_at(w + 2 * k));
            __m512bh w1 = (__m512bh)_mm512_set1_epi32((int)pair_at(w + 2 * k + 2));
            const uint32_t *x0 = X + k * stride + c, *x1 = x0 + stride;
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(x0), w0);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(x0 + 16), w0);
            b0 = _mm512_dpbf16_ps(b0, (__m512bh)_mm512_loadu_si512(x1), w1);
            b1 = _mm512_dpbf16_ps(b1, (__m512bh)_mm512_loadu_si512(x1 + 16), w1);
        }
        if (k < pairs) {
            __m512bh w0 = (__m512bh)_mm512_set1_epi32((int)pair_at(w + 2 * k));
            const uint32_t *x0 = X + k * stride + c;
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(x0), w0);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(x0 + 16), w0);
        }
        _mm512_storeu_ps(out + c, _mm512_add_ps(a0, b0));
        _mm512_storeu_ps(out + c + 16, _mm512_add_ps(a1, b1));
    }
}

static inline void store_row(uint16_t *dst, const float *src, int64_t d) { /* d % 16 == 0 */
    for (int64_t c = 0; c < d; c += 16) store16(dst + c, _mm512_loadu_ps(src + c), 0xFFFF);
}

/* pack rows 0..n-1 of X (row stride s) as [d/2][n32] bf16 pairs over d, zero past n */
static void pack_pairs_over_d(const uint16_t *X, int64_t s, int64_t n, int64_t n32, int64_t d,
                              uint32_t *out) {
    for (int64_t kk = 0; kk < d / 2; kk++)
        for (int64_t j = 0; j < n32; j++) out[kk * n32 + j] = j < n ? pair_at(X + j * s + 2 * kk) : 0;
}

/* pack rows of X as [ceil(n/2)][d] bf16 pairs over rows (rows 2jj and 2jj + 1), zero past n */
static void pack_pairs_over_rows(const uint16_t *X, int64_t s, int64_t n, int64_t d,
                                 uint32_t *out) {
    for (int64_t jj = 0; jj < (n + 1) / 2; jj++) {
        const uint16_t *a = X + 2 * jj * s, *b = 2 * jj + 1 < n ? a + s : NULL;
        for (int64_t c = 0; c < d; c++)
            out[jj * d + c] = (uint32_t)a[c] | (b ? (uint32_t)b[c] << 16 : 0u);
    }
}

/* acc[j][c] += w[j] * row[c] for j in [0, n), c in [0, d) (acc [n][d] float32, d % 16 == 0) */
static inline void add_outer(float *acc, const float *w, int64_t n, const float *row, int64_t d) {
    for (int64_t j = 0; j < n; j++) {
        __m512 wj = _mm512_set1_ps(w[j]);
        for (int64_t c = 0; c < d; c += 16)
            _mm512_storeu_ps(acc + j * d + c,
                             _mm512_fmadd_ps(wj, _mm512_loadu_ps(row + c), _mm512_loadu_ps(acc + j * d + c)));
    }
}

void attention_fused_fwd(const heads_t *a, float scale, uint16_t *P, uint16_t *O, uint64_t seed,
                         uint32_t threshold, float keep_scale, int dropped, int threads) {
    int64_t B = a->B, H = a->H, Lq = a->Lq, Lk = a->Lk, d = a->d;
    int64_t n32 = (Lk + 31) / 32 * 32, tasks = B * H;
    __m256i thr = _mm256_set1_epi16((short)(uint16_t)threshold);
#pragma omp parallel num_threads(threads_for(tasks * Lq * Lk * d / 8, threads))
    {
        uint32_t *Kp = malloc(sizeof(uint32_t) * (size_t)(d / 2 * n32 + (Lk + 1) / 2 * d));
        uint32_t *Vp = Kp + d / 2 * n32;
        float *x = malloc(sizeof(float) * (size_t)(n32 + d)), *of = x + n32;
        uint16_t *drow = malloc(sizeof(uint16_t) * (size_t)(n32 + 2));
        uint64_t *words = malloc(sizeof(uint64_t) * (size_t)(Lk / 4 + 16));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / H, h = t % H, g = h / a->rep;
            const uint16_t *q = a->q + b * a->qsb + h * a->qsh;
            pack_pairs_over_d(a->k + b * a->ksb + g * a->ksh, a->ksl, Lk, n32, d, Kp);
            pack_pairs_over_rows(a->v + b * a->vsb + g * a->vsh, a->vsl, Lk, d, Vp);
            for (int64_t i = 0; i < Lq; i++) {
                combine_pairs(q + i * a->qsl, d / 2, Kp, n32, n32, x); /* S row */
                const uint16_t *m = a->m ? a->m + b * a->mb + h * a->mh + i * a->mq : NULL;
                for (int64_t j = 0; j < Lk; j += 16) {
                    __mmask16 tm = tail(Lk, j);
                    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, x + j), _mm512_set1_ps(scale));
                    if (m) v = _mm512_add_ps(v, load16(m + j, tm));
                    _mm512_mask_storeu_ps(x + j, tm, v);
                }
                int64_t r = (t * Lq + i); /* the row of P: its mask lanes start at r * Lk */
                const uint16_t *lane = dropped ? row_lanes(seed, r * Lk, Lk, words) : NULL;
                softmax_row(x, Lk, P + r * Lk, drow, lane, thr, keep_scale);
                drow[Lk] = 0; /* the pair partner of an odd last key */
                combine_pairs(drow, (Lk + 1) / 2, Vp, d, d, of); /* O row */
                store_row(O + ((b * Lq + i) * H + h) * d, of, d);
            }
        }
        free(Kp);
        free(x);
        free(drow);
        free(words);
    }
}

/* backward: dQ [B, Lq, H, d], dK and dV [B, Lk, H / rep, d] from dO [B, Lq, H, d] and P */
void attention_fused_bwd(const heads_t *a, float scale, const uint16_t *P, const uint16_t *dO,
                         uint64_t seed, uint32_t threshold, float keep_scale, int dropped,
                         uint16_t *dQ, uint16_t *dK, uint16_t *dV, int threads) {
    int64_t B = a->B, H = a->H, G = a->H / a->rep, Lq = a->Lq, Lk = a->Lk, d = a->d;
    int64_t n32 = (Lk + 31) / 32 * 32, tasks = B * G;
    __m256i thr = _mm256_set1_epi16((short)(uint16_t)threshold);
#pragma omp parallel num_threads(threads_for(B * H * Lq * Lk * d / 8, threads))
    {
        uint32_t *Vt = malloc(sizeof(uint32_t) * (size_t)(d / 2 * n32));
        float *kf = malloc(sizeof(float) * (size_t)(3 * Lk * d + 2 * n32 + 2 * d));
        float *dk = kf + Lk * d, *dv = dk + Lk * d, *g = dv + Lk * d, *ds = g + n32;
        float *qf = ds + n32, *of = qf + d;
        uint64_t *words = malloc(sizeof(uint64_t) * (size_t)(Lk / 4 + 16));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) {
            int64_t b = t / G, gh = t % G;
            const uint16_t *k = a->k + b * a->ksb + gh * a->ksh;
            const uint16_t *v = a->v + b * a->vsb + gh * a->vsh;
            pack_pairs_over_d(v, a->vsl, Lk, n32, d, Vt);
            for (int64_t j = 0; j < Lk; j++)
                for (int64_t c = 0; c < d; c += 16)
                    _mm512_storeu_ps(kf + j * d + c, load16(k + j * a->ksl + c, 0xFFFF));
            memset(dk, 0, sizeof(float) * (size_t)(2 * Lk * d));
            for (int64_t h = gh * a->rep; h < (gh + 1) * a->rep; h++) {
                const uint16_t *q = a->q + b * a->qsb + h * a->qsh;
                for (int64_t i = 0; i < Lq; i++) {
                    const uint16_t *go = dO + ((b * Lq + i) * H + h) * d;
                    int64_t r = (b * H + h) * Lq + i;
                    const uint16_t *p = P + r * Lk;
                    combine_pairs(go, d / 2, Vt, n32, n32, g); /* dD row */
                    const uint16_t *lane = dropped ? row_lanes(seed, r * Lk, Lk, words) : NULL;
                    softmax_grad_row(NULL, g, p, Lk, lane, thr, keep_scale, scale, ds, NULL); /* g: dS */
                    /* dV_j += D_ij dO_i */
                    for (int64_t c = 0; c < d; c += 16)
                        _mm512_storeu_ps(of + c, load16(go + c, 0xFFFF));
                    add_outer(dv, ds, Lk, of, d);
                    /* dQ_i = sum_j dS_ij K_j; dK_j += dS_ij Q_i */
                    for (int64_t c = 0; c < d; c += 16)
                        _mm512_storeu_ps(qf + c, load16(q + i * a->qsl + c, 0xFFFF));
                    uint16_t *dq = dQ + ((b * Lq + i) * H + h) * d;
                    for (int64_t c = 0; c < d; c += 16) {
                        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
                        int64_t j = 0;
                        for (; j + 1 < Lk; j += 2) {
                            acc0 = _mm512_fmadd_ps(_mm512_set1_ps(g[j]), _mm512_loadu_ps(kf + j * d + c), acc0);
                            acc1 = _mm512_fmadd_ps(_mm512_set1_ps(g[j + 1]), _mm512_loadu_ps(kf + (j + 1) * d + c), acc1);
                        }
                        if (j < Lk) acc0 = _mm512_fmadd_ps(_mm512_set1_ps(g[j]), _mm512_loadu_ps(kf + j * d + c), acc0);
                        store16(dq + c, _mm512_add_ps(acc0, acc1), 0xFFFF);
                    }
                    add_outer(dk, g, Lk, qf, d);
                }
            }
            for (int64_t j = 0; j < Lk; j++) {
                int64_t at = ((b * Lk + j) * G + gh) * d;
                store_row(dK + at, dk + j * d, d);
                store_row(dV + at, dv + j * d, d);
            }
        }
        free(Vt);
        free(kf);
        free(words);
    }
}

#else /* AVX-512 without BF16 dot products */

int attention_fused_available(void) { return 0; }
void attention_fused_fwd(const void *a, float scale, uint16_t *P, uint16_t *O, uint64_t seed,
                         uint32_t threshold, float keep_scale, int dropped, int threads) {}
void attention_fused_bwd(const void *a, float scale, const uint16_t *P, const uint16_t *dO,
                         uint64_t seed, uint32_t threshold, float keep_scale, int dropped,
                         uint16_t *dQ, uint16_t *dK, uint16_t *dV, int threads) {}
#endif

#else /* no AVX-512: PyTorch's operators */

int attention_chain_available(void) { return 0; }

void attention_chain_fwd(const uint16_t *S, const uint16_t *M, int64_t mb, int64_t mh,
                         int64_t mq, int64_t heads, int64_t q, int64_t rows, int64_t n,
                         float scale, uint16_t *P, uint16_t *D, uint64_t seed,
                         uint32_t threshold, float keep_scale, int threads) {}

void attention_chain_bwd(const uint16_t *dD, const uint16_t *P, int64_t rows, int64_t n,
                         float scale, int dropped, uint64_t seed, uint32_t threshold,
                         float keep_scale, uint16_t *dS, int threads) {}

int attention_fused_available(void) { return 0; }
void attention_fused_fwd(const void *a, float scale, uint16_t *P, uint16_t *O, uint64_t seed,
                         uint32_t threshold, float keep_scale, int dropped, int threads) {}
void attention_fused_bwd(const void *a, float scale, const uint16_t *P, const uint16_t *dO,
                         uint64_t seed, uint32_t threshold, float keep_scale, int dropped,
                         uint16_t *dQ, uint16_t *dK, uint16_t *dV, int threads) {}

#endif
