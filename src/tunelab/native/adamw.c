/* AdamW (decoupled weight decay) for fp32 master weights, with the arithmetic of PyTorch's
 * fused CPU kernel (torch._fused_adamw_: the same operations in the same order, every one
 * rounded to float, no contraction: built with -ffp-contract=off), so results equal it bit
 * for bit. What it adds, each saving a pass over memory per training step:
 *
 *   - the gradient may be bf16 (a bf16 compute copy's gradient, read and widened exactly);
 *   - the updated weight may also be written as a bf16 copy (the next forward's weights);
 *   - many tensors in one call, split over threads in chunks;
 *   - an embedding table updated from its sparse gradient (row ids + values) in place,
 *     without a dense gradient: rows with no gradient and no moments (never seen) only decay;
 *   - sums of squares of many fp32/bf16 tensors in one call (gradient clipping's norm).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

typedef struct {
    float decay;     /* 1 - lr * weight_decay (1 without weight decay) */
    float coef1;     /* 1 - beta1: exp_avg.lerp_(grad, coef1) */
    float beta2;     /* exp_avg_sq * beta2 + coef2 * grad * grad */
    float coef2;     /* 1 - beta2 */
    float bc2_sqrt;  /* sqrt(1 - beta2 ** step) */
    float eps;
    float step_size; /* lr / (1 - beta1 ** step) */
    float scale;     /* gradients are divided by it (gradient clipping; 1 = none) */
} adam_t;

/* one element; g is already divided by the scale. PyTorch's kernel runs a vector loop over
 * whole vectors of VEC floats and a scalar loop over the rest, which the compiler contracted
 * differently: exp_avg_sq is fma(grad * coef2, grad, exp_avg_sq * beta2) in the first,
 * fma(exp_avg_sq, beta2, grad * coef2 * grad) in the second (`tail`). */
#define VEC 8
static inline float adam_one(float w, float g, float *m, float *v, const adam_t *a, int tail) {
    w = w * a->decay;
    float mi = *m;
    /* torch's lerp: weight below 0.5 -> m + w (g - m), else g - (1 - w) (g - m) */
    mi = a->coef1 < 0.5f ? fmaf(a->coef1, g - mi, mi) : fmaf(a->coef1 - 1.0f, g - mi, g);
    float vi = tail ? fmaf(*v, a->beta2, a->coef2 * g * g) : fmaf(a->coef2 * g, g, *v * a->beta2);
    *m = mi;
    *v = vi;
    float denom = sqrtf(vi) / a->bc2_sqrt + a->eps;
    return w - a->step_size * mi / denom;
}

#define SPAN_PART(FROM, TO, TAIL, GRAD, COPY)                                                  \
    for (int64_t i = FROM; i < TO; i++) {                                                      \
        float g = (GRAD) / a->scale;                                                           \
        float w = adam_one(p[i], g, m + i, v + i, a, TAIL);                                    \
        p[i] = w;                                                                              \
        COPY;                                                                                  \
    }
#define SPAN_LOOP(GRAD, COPY)                                                                  \
    SPAN_PART(0, body, 0, GRAD, COPY)                                                          \
    SPAN_PART(body, len, 1, GRAD, COPY)

/* `len` elements of which the first `body` take the vector loop's arithmetic */
static void span(float *restrict p, float *restrict m, float *restrict v, const void *grad,
                 int bf16, float *restrict back, uint16_t *restrict copy, int64_t len,
                 int64_t body, const adam_t *a) {
    const float *gf = (const float *)grad;
    const uint16_t *gh = (const uint16_t *)grad;
    if (bf16 && copy) {
        SPAN_LOOP(bf16_to_f32(gh[i]), copy[i] = f32_to_bf16(w))
    } else if (bf16) {
        SPAN_LOOP(bf16_to_f32(gh[i]), (void)0)
    } else if (back && copy) { /* fp32 gradient written back scaled, like torch's kernel */
        SPAN_LOOP(gf[i], (back[i] = g, copy[i] = f32_to_bf16(w)))
    } else if (back) {
        SPAN_LOOP(gf[i], back[i] = g)
    } else if (copy) {
        SPAN_LOOP(gf[i], copy[i] = f32_to_bf16(w))
    } else {
        SPAN_LOOP(gf[i], (void)0)
    }
}

#define CHUNK 16384

/* AdamW on k tensors: tensor t has n[t] elements at p[t], m[t], v[t], its gradient at g[t]
 * (bf16 where bf16[t], else fp32; an fp32 gradient is overwritten with its scaled value when
 * scale != 1) and, where copy[t] is not NULL, the new weights also go to copy[t] as bf16. */
void adamw_many(int64_t k, float *const *p, float *const *m, float *const *v,
                void *const *g, const uint8_t *bf16, uint16_t *const *copy, const int64_t *n,
                const adam_t *a, int threads) {
    int64_t spans = 0;
    for (int64_t t = 0; t < k; t++) spans += (n[t] + CHUNK - 1) / CHUNK;
    int64_t *of = malloc((size_t)(spans > 0 ? spans : 1) * 2 * sizeof(int64_t));
    if (!of) return;
    int64_t s = 0;
    for (int64_t t = 0; t < k; t++)
        for (int64_t start = 0; start < n[t]; start += CHUNK, s++) {
            of[2 * s] = t;
            of[2 * s + 1] = start;
        }
    int nt = spans > 1 ? threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j = 0; j < spans; j++) {
        int64_t t = of[2 * j], start = of[2 * j + 1];
        int64_t len = n[t] - start < CHUNK ? n[t] - start : CHUNK;
        int h = bf16[t];
        const void *gt = h ? (const void *)((const uint16_t *)g[t] + start)
                           : (const void *)((const float *)g[t] + start);
        float *back = (!h && a->scale != 1.0f) ? (float *)g[t] + start : NULL;
        int64_t body = start + len == n[t] ? len - n[t] % VEC : len; /* a tensor's last VEC */
        span(p[t] + start, m[t] + start, v[t] + start, gt, h, back,
             copy[t] ? copy[t] + start : NULL, len, body, a);
    }
    free(of);
}

/* An embedding table (rows x dim) from its sparse gradient: ids[j] (distinct, coalesced) has
 * gradient row vals[j]. A row with a gradient, or marked in `live` (nonzero moments from an
 * earlier step), takes the full update; any other row has zero moments and a zero gradient,
 * where the update reduces to the weight decay alone (w * decay - 0), applied as that.
 * Marks the gradient's rows in `live`. */
void adamw_rows(float *p, float *m, float *v, int64_t rows, int64_t dim, const int64_t *ids,
                const float *vals, int64_t nids, uint8_t *live, const adam_t *a, int threads) {
    int32_t *slot = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(int32_t));
    float *zero = calloc((size_t)(dim > 0 ? dim : 1), sizeof(float));
    if (!slot || !zero) {
        free(slot);
        free(zero);
        return;
    }
    memset(slot, 0xFF, (size_t)rows * sizeof(int32_t)); /* -1 */
    for (int64_t j = 0; j < nids; j++) {
        slot[ids[j]] = (int32_t)j;
        live[ids[j]] = 1;
    }
    int nt = rows * dim > CHUNK ? threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; r++) {
        float *pr = p + r * dim;
        if (slot[r] >= 0 || live[r]) {
            const float *gr = slot[r] >= 0 ? vals + (int64_t)slot[r] * dim : zero;
            /* the table as one tensor: only its last row holds the scalar part */
            int64_t body = r == rows - 1 ? dim - (rows * dim) % VEC : dim;
            span(pr, m + r * dim, v + r * dim, gr, 0, NULL, NULL, dim, body, a);
        } else if (a->decay != 1.0f) {
            for (int64_t i = 0; i < dim; i++) pr[i] = pr[i] * a->decay;
        }
    }
    free(slot);
    free(zero);
}

/* The sum of the squares of k tensors' elements (bf16 where bf16[t], else fp32), each
 * widened to double (the additions in any order: vectorised, threaded). */
double sum_squares(int64_t k, void *const *x, const uint8_t *bf16, const int64_t *n,
                   int threads) {
    double total = 0.0;
    for (int64_t t = 0; t < k; t++) {
        double s = 0.0;
        int64_t len = n[t];
        int nt = len > CHUNK ? threads : 1;
        if (bf16[t]) {
            const uint16_t *h = (const uint16_t *)x[t];
#pragma omp parallel for simd reduction(+ : s) schedule(static) num_threads(nt)
            for (int64_t i = 0; i < len; i++) {
                double f = bf16_to_f32(h[i]);
                s += f * f;
            }
        } else {
            const float *f = (const float *)x[t];
#pragma omp parallel for simd reduction(+ : s) schedule(static) num_threads(nt)
            for (int64_t i = 0; i < len; i++) {
                double d = f[i];
                s += d * d;
            }
        }
        total += s;
    }
    return total;
}
