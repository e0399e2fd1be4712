/* LayerNorm forward and backward and GELU's (erf) backward on bf16 tensors, float32 inside,
 * AVX-512.
 *
 * PyTorch's bf16 LayerNorm backward takes about 0.26-0.43 ms for a 864-1024 x 384 batch on
 * the 2-core Xeon (13 per MiniLM step), its GELU backward 0.56-0.75 ms for 864-1024 x 1536
 * (6 per step). Here a LayerNorm row is read once per pass with its statistics kept in
 * float32 (PyTorch keeps them in bf16 for a bf16 input), the weight and bias gradients are
 * summed per thread and then across threads; GELU's erf is Abramowitz and Stegun 7.1.26
 * (absolute error 1.5e-7), whose exp(-x^2/2) also gives the derivative's Gaussian term (a
 * forward pass written the same way measured slower than PyTorch's, so it is not here).
 *
 * Layouts: x, y, g, dx contiguous [rows, n]; weight and bias bf16 [n]; mean and rstd float32
 * [rows]; the parameter gradients float32 [n]. Without AVX-512 (BW, VL, DQ) nothing is
 * compiled and layers_available() returns 0: the caller keeps PyTorch's operators.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <omp.h>

#include "avx512.h"
#include "threads.h"

int layers_available(void) { return 1; }

void layer_norm_fwd(const uint16_t *x, const uint16_t *w, const uint16_t *b, int64_t rows,
                    int64_t n, float eps, uint16_t *y, float *mean, float *rstd, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads_for(rows * n, threads))
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *xr = x + r * n;
        __m512 s = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) s = _mm512_add_ps(s, load16(xr + j, tail(n, j)));
        float mu = _mm512_reduce_add_ps(s) / (float)n;
        __m512 vmu = _mm512_set1_ps(mu), ss = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 d = _mm512_maskz_sub_ps(t, load16(xr + j, t), vmu);
            ss = _mm512_fmadd_ps(d, d, ss);
        }
        float rs = 1.0f / __builtin_sqrtf(_mm512_reduce_add_ps(ss) / (float)n + eps);
        __m512 vrs = _mm512_set1_ps(rs);
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 t = tail(n, j);
            __m512 h = _mm512_mul_ps(_mm512_sub_ps(load16(xr + j, t), vmu), vrs);
            store16(y + r * n + j, _mm512_fmadd_ps(h, load16(w + j, t), load16(b + j, t)), t);
        }
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* dx; dw += sum over rows of g * xhat, db += sum of g (dw, db zeroed by the caller) */
void layer_norm_bwd(const uint16_t *g, const uint16_t *x, const float *mean, const float *rstd,
                    const uint16_t *w, int64_t rows, int64_t n, uint16_t *dx, float *dw,
                    float *db, int threads) {
    int nt = threads_for(rows * n, threads);
#pragma omp parallel num_threads(nt)
    {
        float *pw = calloc((size_t)(2 * n), sizeof(float)), *pb = pw + n;
        int me = omp_get_thread_num(), all = omp_get_num_threads();
        int64_t lo = rows * me / all, hi = rows * (me + 1) / all;
        for (int64_t r = lo; r < hi; r++) {
            const uint16_t *gr = g + r * n, *xr = x + r * n;
            __m512 vmu = _mm512_set1_ps(mean[r]), vrs = _mm512_set1_ps(rstd[r]);
            __m512 sa = _mm512_setzero_ps(), sc = _mm512_setzero_ps();
            for (int64_t j = 0; j < n; j += 16) {
                __mmask16 t = tail(n, j);
                __m512 gv = load16(gr + j, t);
                __m512 h = _mm512_mul_ps(_mm512_maskz_sub_ps(t, load16(xr + j, t), vmu), vrs);
                __m512 gw = _mm512_mul_ps(gv, load16(w + j, t));
                sa = _mm512_add_ps(sa, gw);
                sc = _mm512_fmadd_ps(gw, h, sc);
                _mm512_mask_storeu_ps(pw + j, t, _mm512_fmadd_ps(gv, h, _mm512_maskz_loadu_ps(t, pw + j)));
                _mm512_mask_storeu_ps(pb + j, t, _mm512_add_ps(gv, _mm512_maskz_loadu_ps(t, pb + j)));
            }
            __m512 a = _mm512_set1_ps(_mm512_reduce_add_ps(sa) / (float)n);
            __m512 c = _mm512_set1_ps(_mm512_reduce_add_ps(sc) / (float)n);
            for (int64_t j = 0; j < n; j += 16) {
                __mmask16 t = tail(n, j);
                __m512 h = _mm512_mul_ps(_mm512_sub_ps(load16(xr + j, t), vmu), vrs);
                __m512 gw = _mm512_mul_ps(load16(gr + j, t), load16(w + j, t));
                __m512 v = _mm512_sub_ps(_mm512_sub_ps(gw, a), _mm512_mul_ps(h, c));
                store16(dx + r * n + j, _mm512_mul_ps(v, vrs), t);
            }
        }
#pragma omp critical
        for (int64_t j = 0; j < n; j++) {
            dw[j] += pw[j];
            db[j] += pb[j];
        }
        free(pw);
    }
}

/* erf(z) = 1 - poly(t) * exp(-z^2), t = 1 / (1 + p |z|), sign restored; e2 = exp(-z^2) */
static inline __m512 erf16(__m512 z, __m512 e2) {
    __m512 az = _mm512_abs_ps(z);
    __m512 d = _mm512_fmadd_ps(az, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(d); /* 1 / d to 14 bits, then one Newton step: ~23 bits */
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    __m512 e = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e2, _mm512_set1_ps(1.0f));
    /* copy z's sign onto e */
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(e), sign));
}

#define SQRT1_2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* dx = g * (cdf(x) + x * pdf(x)) */
void gelu_bwd(const uint16_t *g, const uint16_t *x, uint16_t *dx, int64_t n, int threads) {
    int64_t blocks = (n + 15) / 16;
#pragma omp parallel for schedule(static) num_threads(threads_for(n, threads))
    for (int64_t k = 0; k < blocks; k++) {
        int64_t j = k * 16;
        __mmask16 t = tail(n, j);
        __m512 v = load16(x + j, t);
        __m512 e = exp16(_mm512_mul_ps(_mm512_mul_ps(v, v), _mm512_set1_ps(-0.5f)));
        __m512 cdf = _mm512_fmadd_ps(erf16(_mm512_mul_ps(v, _mm512_set1_ps(SQRT1_2)), e),
                                     _mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
        __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(v, e), _mm512_set1_ps(INV_SQRT_2PI), cdf);
        store16(dx + j, _mm512_mul_ps(load16(g + j, t), d), t);
    }
}

#else /* no AVX-512: PyTorch's operators */

int layers_available(void) { return 0; }

void layer_norm_fwd(const uint16_t *x, const uint16_t *w, const uint16_t *b, int64_t rows,
                    int64_t n, float eps, uint16_t *y, float *mean, float *rstd, int threads) {}

void layer_norm_bwd(const uint16_t *g, const uint16_t *x, const float *mean, const float *rstd,
                    const uint16_t *w, int64_t rows, int64_t n, uint16_t *dx, float *dw,
                    float *db, int threads) {}

void gelu_bwd(const uint16_t *g, const uint16_t *x, uint16_t *dx, int64_t n, int threads) {}

#endif
