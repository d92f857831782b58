/*
 * The early-fusion recipe of astro_mantis.fusion.core in one pass over memory:
 * centre crops, non-finite pixels to zero (counted per channel), the three survey
 * stretches, the antialiased bilinear resize 22 -> 120 (torch's own taps, passed in),
 * and the nine channels interleaved into the network's channels-last input, in
 * float32 or rounded to bfloat16 -- for astro_mantis.fusion.batched.fuse_arrays_fast.
 *
 * Why hand-written: torch.compile's code for the same recipe writes a float32 NCHW
 * intermediate and transposes it (about 135 us a galaxy on two cores); here each
 * output row is assembled in the L1 cache and written once.
 *
 * asinh(y) for y >= 0 is log(y + sqrt(y^2 + 1)), with a polynomial log (fitted for
 * this module by weighted least squares, absolute error below 4e-8 on the reduced
 * argument) so that the loops vectorise; the result agrees with the NumPy reference
 * to about 1e-6 (tested), as the compiled recipe does. The bfloat16 rounding is
 * torch's: round to nearest, ties to even.
 *
 * One function, fuse_rows(...), releases the interpreter lock: Python threads fuse
 * separate row ranges in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* one build for every x86-64 machine: the loader picks the widest vectors it has */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#define NCHAN 9
#define MAXBANDS 5
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 2
#endif

typedef struct {
    const float *data;          /* (n, nb, ny, nx) C-contiguous float32; NULL: missing */
    Py_ssize_t nb, ny, nx, top, left, crop;
    float a, b;                 /* stretch max(asinh(a x) / b, 0); b == 0: clip(x / a, 0, 1) */
    int first;                  /* first channel */
    int k;                      /* resize taps per output pixel; 0: no resize */
    const int32_t *idx;         /* (size, k) */
    const float *w;             /* (size, k) */
} survey_t;

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* log(u) for finite u >= 1: u = 2^e m with m in [sqrt(1/2), sqrt(2)) (found with
 * integer operations only), log(1 + f) = f - f^2/2 + f^3 P(f), P of degree 5 */
static inline float log_ge1(float u)
{
    uint32_t i = f2u(u) - 0x3f3504f3u;          /* the bits of sqrt(1/2) */
    float e = (float)((int32_t)i >> 23);
    float f = u2f((i & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    float f2 = f * f;
    float p = -0.10224143415689468f;
    p = p * f + 0.16141173243522644f;
    p = p * f - 0.17166921496391296f;
    p = p * f + 0.19910238683223724f;
    p = p * f - 0.2498057335615158f;
    p = p * f + 0.3333469033241272f;
    float r = f - 0.5f * f2 + f * f2 * p + e * -2.12194440e-4f;
    return r + e * 0.693359375f;                /* ln 2 = 0.693359375 - 2.12194440e-4 */
}

/* max(asinh(a v) / b, 0) without branches, so that the loop vectorises (inv_b = 1 / b) */
static inline float stretch_asinh(float v, float a, float inv_b)
{
    float y = a * v;
    y = y > 0.0f ? y : 0.0f;
    int huge = y > 1e18f;                       /* y^2 + 1 would overflow: asinh y = log 2y */
    float yc = huge ? 1.0f : y;
    float u = huge ? y : yc + sqrtf(yc * yc + 1.0f);
    return (log_ge1(u) + (huge ? 0.69314718f : 0.0f)) * inv_b;
}

static inline int32_t nonfinite(float v) { return (f2u(v) & 0x7f800000u) == 0x7f800000u; }

/* dst[x] = the asinh stretch of src[x] for x < n; counts the non-finite pixels at
 * x >= skip (those below were counted already) */
static inline int32_t asinh_block(float *restrict dst, const float *restrict src,
                                  Py_ssize_t n, float a, float inv_b, Py_ssize_t skip)
{
    int32_t bad = 0;
    for (Py_ssize_t x = 0; x < n; x++) {
        float v = src[x];
        int32_t nf = nonfinite(v);
        bad += nf & (x >= skip);
        dst[x] = stretch_asinh(nf ? 0.0f : v, a, inv_b);
    }
    return bad;
}

/* One row of a survey's stretch, non-finite pixels as 0; returns how many there were.
 * b == 0: GALEX, clip(x / a, 0, 1). */
CLONES
static int32_t stretch_row(float *restrict dst, const float *restrict src, Py_ssize_t n,
                           float a, float b)
{
    int32_t bad = 0;
    if (b == 0.0f) {
        for (Py_ssize_t x = 0; x < n; x++) {
            float v = src[x];
            int32_t nf = nonfinite(v);
            bad += nf;
            float y = (nf ? 0.0f : v) / a;
            y = y > 0.0f ? y : 0.0f;
            dst[x] = y < 1.0f ? y : 1.0f;
        }
        return bad;
    }
    float inv_b = 1.0f / b;                     /* exact for Pan-STARRS (8) */
    Py_ssize_t n16 = n < 16 ? 0 : n & ~(Py_ssize_t)15;
    bad = asinh_block(dst, src, n16, a, inv_b, 0);
    if (n16 == n)
        return bad;
    /* the rest as one more block of 16 that overlaps the last (the same values are
     * written twice), rather than one pixel at a time */
    Py_ssize_t x0 = n < 16 ? 0 : n - 16;
    return bad + asinh_block(dst + x0, src + x0, n < 16 ? n : 16, a, inv_b, n16 - x0);
}

/* dst[x] = w[x, 0] src[idx[x, 0]] + w[x, 1] src[idx[x, 1]] + ... (the horizontal pass) */
CLONES
static void taps_row(float *restrict dst, const float *restrict src,
                     const int32_t *restrict idx, const float *restrict w, int k,
                     Py_ssize_t n)
{
    if (k == 2) {
        for (Py_ssize_t x = 0; x < n; x++)
            dst[x] = src[idx[2 * x]] * w[2 * x] + src[idx[2 * x + 1]] * w[2 * x + 1];
        return;
    }
    for (Py_ssize_t x = 0; x < n; x++) {
        float s = src[idx[x * k]] * w[x * k];
        for (int j = 1; j < k; j++)
            s += src[idx[x * k + j]] * w[x * k + j];
        dst[x] = s;
    }
}

/* dst[x] = w[0] rows[0][x] + w[1] rows[1][x] + ... (the vertical pass) */
CLONES
static void blend_rows(float *restrict dst, const float *const *rows, const float *w, int k,
                       Py_ssize_t n)
{
    if (k == 2) {
        const float *restrict r0 = rows[0], *restrict r1 = rows[1];
        float w0 = w[0], w1 = w[1];
        for (Py_ssize_t x = 0; x < n; x++)
            dst[x] = r0[x] * w0 + r1[x] * w1;
        return;
    }
    for (Py_ssize_t x = 0; x < n; x++) {
        float s = rows[0][x] * w[0];
        for (int j = 1; j < k; j++)
            s += rows[j][x] * w[j];
        dst[x] = s;
    }
}

static inline uint16_t to_bf16(float f)
{
    uint32_t u = f2u(f);
    u += 0x7fffu + ((u >> 16) & 1u);            /* finite values only */
    return (uint16_t)(u >> 16);
}

/* The nine channel rows interleaved into one output row: dst[p] = row[from[p]], where
 * from[p] = (p % 9) * n + p / 9 (a gather, which vectorises) */
CLONES
static void interleave_bf16(uint16_t *restrict dst, const float *restrict row,
                            const int32_t *restrict from, Py_ssize_t len)
{
    for (Py_ssize_t p = 0; p < len; p++)
        dst[p] = to_bf16(row[from[p]]);
}

CLONES
static void interleave_f32(float *restrict dst, const float *restrict row,
                           const int32_t *restrict from, Py_ssize_t len)
{
    for (Py_ssize_t p = 0; p < len; p++)
        dst[p] = row[from[p]];
}

/* Fuse galaxies [start, stop): out is (n, size, size, 9), counts (n, 9) int64.
 * Scratch: row (9 size), stage (the largest crop), hbuf (crop x size per resized band),
 * from (9 size int32). */
static void fuse_range(const survey_t *sv, Py_ssize_t start, Py_ssize_t stop,
                       Py_ssize_t size, void *out, int bf16, int64_t *counts,
                       float *row, float *stage, float *hbuf, int32_t *from)
{
    for (Py_ssize_t p = 0; p < size * NCHAN; p++)
        from[p] = (int32_t)((p % NCHAN) * size + p / NCHAN);
    for (int s = 0; s < 3; s++)                 /* missing surveys: zero rows throughout */
        if (sv[s].data == NULL)
            memset(row + sv[s].first * size, 0, sv[s].nb * size * sizeof(float));
    for (Py_ssize_t g = start; g < stop; g++) {
        /* the resized surveys: stretch each crop row into stage, then the horizontal
         * pass into hbuf (crop x size per band) */
        float *h[3][MAXBANDS];
        float *hnext = hbuf;
        for (int s = 0; s < 3; s++) {
            const survey_t *v = &sv[s];
            for (Py_ssize_t c = 0; c < v->nb; c++) {
                int64_t *cnt = &counts[g * NCHAN + v->first + c];
                *cnt = 0;
                if (v->data == NULL || v->k == 0)   /* not resized: counted row by row */
                    continue;
                const float *plane = v->data + ((g * v->nb + c) * v->ny + v->top) * v->nx
                    + v->left;
                h[s][c] = hnext;
                hnext += v->crop * size;
                for (Py_ssize_t y = 0; y < v->crop; y++) {
                    *cnt += stretch_row(stage, plane + y * v->nx, v->crop, v->a, v->b);
                    taps_row(h[s][c] + y * size, stage, v->idx, v->w, v->k, size);
                }
            }
        }
        for (Py_ssize_t y = 0; y < size; y++) {
            for (int s = 0; s < 3; s++) {
                const survey_t *v = &sv[s];
                if (v->data == NULL)
                    continue;
                for (Py_ssize_t c = 0; c < v->nb; c++) {
                    float *dst = row + (v->first + c) * size;
                    if (v->k == 0) {
                        const float *src = v->data
                            + ((g * v->nb + c) * v->ny + v->top + y) * v->nx + v->left;
                        /* ask for rows ahead: five bands' rows are read at once, more
                         * streams than the hardware prefetchers follow well */
                        if (y + PREFETCH_ROWS < size)
                            for (Py_ssize_t q = 0; q < size; q += 16)
                                PREFETCH(src + PREFETCH_ROWS * v->nx + q);
                        counts[g * NCHAN + v->first + c] += stretch_row(dst, src, size, v->a,
                                                                       v->b);
                    } else {
                        const float *rows[8];
                        for (int j = 0; j < v->k; j++)
                            rows[j] = h[s][c] + (Py_ssize_t)v->idx[y * v->k + j] * size;
                        blend_rows(dst, rows, v->w + y * v->k, v->k, size);
                    }
                }
            }
            Py_ssize_t off = (g * size + y) * size * NCHAN;
            if (bf16)
                interleave_bf16((uint16_t *)out + off, row, from, size * NCHAN);
            else
                interleave_f32((float *)out + off, row, from, size * NCHAN);
        }
    }
}

static int get_survey(PyObject *spec, survey_t *v, Py_buffer *bufs, int *nbufs,
                      Py_ssize_t n, Py_ssize_t size)
{
    /* spec: (data or None, nb, ny, nx, top, left, crop, a, b, first, idx, w, k) */
    PyObject *data, *idx, *w;
    if (!PyArg_ParseTuple(spec, "OnnnnnnffiOOi", &data, &v->nb, &v->ny, &v->nx, &v->top,
                          &v->left, &v->crop, &v->a, &v->b, &v->first, &idx, &w, &v->k))
        return -1;
    v->data = NULL;
    if (v->nb < 0 || v->nb > MAXBANDS || v->first < 0 || v->first + v->nb > NCHAN) {
        PyErr_SetString(PyExc_ValueError, "bad bands or first channel");
        return -1;
    }
    if (data == Py_None)
        return 0;
    if (v->k < 0 || v->k > 8 || v->crop <= 0 || v->top < 0 || v->left < 0
        || v->top + v->crop > v->ny || v->left + v->crop > v->nx
        || (v->k == 0 && v->crop != size) || (v->b != 0.0f && !(v->b > 0.0f))
        || !(v->a > 0.0f)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent survey geometry or stretch");
        return -1;
    }
    Py_buffer *b = &bufs[*nbufs];
    if (PyObject_GetBuffer(data, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    (*nbufs)++;
    if (b->itemsize != 4 || strcmp(b->format, "f") != 0
        || b->len != n * v->nb * v->ny * v->nx * 4) {
        PyErr_SetString(PyExc_ValueError, "survey data must be float32 (n, nb, ny, nx)");
        return -1;
    }
    v->data = (const float *)b->buf;
    if (v->k > 0) {
        Py_buffer *bi = &bufs[*nbufs];
        if (PyObject_GetBuffer(idx, bi, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return -1;
        (*nbufs)++;
        Py_buffer *bw = &bufs[*nbufs];
        if (PyObject_GetBuffer(w, bw, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            return -1;
        (*nbufs)++;
        if (bi->itemsize != 4 || bw->itemsize != 4 || strcmp(bw->format, "f") != 0
            || bi->len != size * v->k * 4 || bw->len != bi->len) {
            PyErr_SetString(PyExc_ValueError, "resize taps must be int32 and float32 (size, k)");
            return -1;
        }
        v->idx = (const int32_t *)bi->buf;
        v->w = (const float *)bw->buf;
        for (Py_ssize_t i = 0; i < size * v->k; i++)
            if (v->idx[i] < 0 || v->idx[i] >= v->crop) {
                PyErr_SetString(PyExc_ValueError, "resize tap outside the crop");
                return -1;
            }
    }
    return 0;
}

PyDoc_STRVAR(fuse_rows_doc,
"fuse_rows(out, counts, n, start, stop, size, bf16, galex, panstarrs, unwise)\n\n"
"Fuse rows [start, stop) of n into out ((n, size, size, 9) float32, or uint16 holding\n"
"bfloat16 when bf16) and counts ((n, 9) int64: non-finite pixels per channel). Each\n"
"survey is (data or None, nb, ny, nx, top, left, crop, a, b, first, idx, w, k).\n"
"Releases the interpreter lock while it works.");

static PyObject *fuse_rows(PyObject *self, PyObject *args)
{
    PyObject *out_obj, *counts_obj, *specs[3];
    Py_ssize_t n, start, stop, size;
    int bf16;
    if (!PyArg_ParseTuple(args, "OOnnnnpOOO", &out_obj, &counts_obj, &n, &start, &stop, &size,
                          &bf16, &specs[0], &specs[1], &specs[2]))
        return NULL;
    Py_buffer bufs[11];
    int nbufs = 0;
    survey_t sv[3];
    memset(sv, 0, sizeof sv);
    PyObject *result = NULL;
    float *scratch = NULL;
    if (start < 0 || stop > n || start > stop || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad row range");
        goto done;
    }
    if (PyObject_GetBuffer(out_obj, &bufs[nbufs], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    Py_buffer *ob = &bufs[nbufs++];
    if (ob->len != n * size * size * NCHAN * (bf16 ? 2 : 4)) {
        PyErr_SetString(PyExc_ValueError, "out has the wrong size");
        goto done;
    }
    if (PyObject_GetBuffer(counts_obj, &bufs[nbufs], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
        goto done;
    Py_buffer *cb = &bufs[nbufs++];
    if (cb->len != n * NCHAN * 8) {
        PyErr_SetString(PyExc_ValueError, "counts has the wrong size");
        goto done;
    }
    Py_ssize_t hsize = 0, maxcrop = 1;
    for (int s = 0; s < 3; s++) {
        if (get_survey(specs[s], &sv[s], bufs, &nbufs, n, size) < 0)
            goto done;
        if (sv[s].data != NULL && sv[s].k > 0) {
            hsize += sv[s].nb * sv[s].crop * size;
            maxcrop = sv[s].crop > maxcrop ? sv[s].crop : maxcrop;
        }
    }
    if (sv[0].nb + sv[1].nb + sv[2].nb != NCHAN) {
        PyErr_SetString(PyExc_ValueError, "the surveys must give nine channels");
        goto done;
    }
    scratch = malloc((NCHAN * size + maxcrop + hsize + NCHAN * size) * sizeof(float));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    fuse_range(sv, start, stop, size, ob->buf, bf16, (int64_t *)cb->buf, scratch,
               scratch + NCHAN * size, scratch + NCHAN * size + maxcrop,
               (int32_t *)(scratch + NCHAN * size + maxcrop + hsize));
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int i = 0; i < nbufs; i++)
        PyBuffer_Release(&bufs[i]);
    free(scratch);
    return result;
}

static PyMethodDef methods[] = {
    {"fuse_rows", fuse_rows, METH_VARARGS, fuse_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel",
    "The early-fusion recipe in one hand-written pass (see fuse_arrays_fast).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
