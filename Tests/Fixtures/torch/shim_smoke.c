/*
 * shim_smoke.c - end-to-end check of libtts_torch_shim.so through its C ABI, loaded with dlopen.
 *
 *   shim_smoke --lib .build-torchshim/libtts_torch_shim.so --model ref.pt --modules DIR
 *              [--threads N] [--steps 200] [--workdir DIR] [--losses-out FILE]
 *   shim_smoke --lib ... --model ref.pt --bench STEPS [--threads N]   (prints steps/s as JSON)
 *
 * DIR holds the broken modules of scripts/torch/export_test_modules.py. Built and run by
 * scripts/torch/build-shim.sh --smoke. Prints one PASS/FAIL line per check and, last,
 * "N passed, M failed"; exits 1 if anything failed.
 *
 * Batches are the synthetic batches of CONTRACT.md ("Synthetic batches"), bit-identical to
 * scripts/torch/synthetic_batches.py.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tts_torch_shim.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- the ABI, resolved with dlsym ------------------------------------------------------- */

static struct {
    int (*abi_version)(void);
    const char *(*last_error)(void);
    int32_t (*cuda_device_count)(void);
    int32_t (*built_with_cuda)(void);
    tts_status (*device_info)(int32_t, tts_device_info *);
    void (*default_config)(tts_train_config *);
    double (*lr_at)(const tts_train_config *, int64_t);
    tts_status (*model_load)(const char *, const tts_train_config *, tts_model **);
    void (*model_free)(tts_model *);
    int64_t (*step)(const tts_model *);
    int64_t (*parameter_count)(const tts_model *);
    int32_t (*forward_arity)(const tts_model *);
    tts_status (*train_step)(tts_model *, const tts_batch *, int32_t, tts_step_result *);
    tts_status (*eval_step)(tts_model *, const tts_batch *, tts_step_result *);
    tts_status (*save_checkpoint)(tts_model *, const char *, const char *);
    tts_status (*load_checkpoint)(tts_model *, const char *, char *, int64_t, int64_t *);
    tts_status (*read_checkpoint_extra)(const char *, char *, int64_t, int64_t *, int64_t *);
} S;

static int resolve(void *h) {
#define SYM(field, name)                                                   \
    do {                                                                   \
        *(void **)(&S.field) = dlsym(h, name);                             \
        if (!S.field) {                                                    \
            fprintf(stderr, "missing symbol %s: %s\n", name, dlerror());   \
            return 0;                                                      \
        }                                                                  \
    } while (0)
    SYM(abi_version, "tts_shim_abi_version");
    SYM(last_error, "tts_shim_last_error");
    SYM(cuda_device_count, "tts_shim_cuda_device_count");
    SYM(built_with_cuda, "tts_shim_built_with_cuda");
    SYM(device_info, "tts_shim_device_info");
    SYM(default_config, "tts_shim_default_config");
    SYM(lr_at, "tts_shim_lr_at");
    SYM(model_load, "tts_shim_model_load");
    SYM(model_free, "tts_shim_model_free");
    SYM(step, "tts_shim_step");
    SYM(parameter_count, "tts_shim_parameter_count");
    SYM(forward_arity, "tts_shim_forward_arity");
    SYM(train_step, "tts_shim_train_step");
    SYM(eval_step, "tts_shim_eval_step");
    SYM(save_checkpoint, "tts_shim_save_checkpoint");
    SYM(load_checkpoint, "tts_shim_load_checkpoint");
    SYM(read_checkpoint_extra, "tts_shim_read_checkpoint_extra");
#undef SYM
    return 1;
}

/* ---- reporting -------------------------------------------------------------------------- */

static int g_pass = 0, g_fail = 0;

static void check(int ok, const char *name, const char *fmt, ...) {
    va_list ap;
    printf("%s %s", ok ? "PASS" : "FAIL", name);
    if (fmt && *fmt) {
        printf(": ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf("\n");
    fflush(stdout);
    if (ok) g_pass++;
    else g_fail++;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- synthetic batches (CONTRACT.md) ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t lcg_next(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

typedef struct {
    int64_t b, t, c;
    int64_t *text, *tl, *codes, *cl;
    int64_t shape_text[2], shape_tl[1], shape_codes[2], shape_cl[1];
    tts_tensor tensors[4];
    tts_batch batch;
} host_batch;

static void bind(host_batch *h) {
    h->shape_text[0] = h->b; h->shape_text[1] = h->t;
    h->shape_tl[0] = h->b;
    h->shape_codes[0] = h->b; h->shape_codes[1] = h->c;
    h->shape_cl[0] = h->b;
    tts_tensor t0 = {"text_ids", TTS_DTYPE_INT64, 2, h->shape_text, h->text};
    tts_tensor t1 = {"text_lengths", TTS_DTYPE_INT64, 1, h->shape_tl, h->tl};
    tts_tensor t2 = {"code_ids", TTS_DTYPE_INT64, 2, h->shape_codes, h->codes};
    tts_tensor t3 = {"code_lengths", TTS_DTYPE_INT64, 1, h->shape_cl, h->cl};
    h->tensors[0] = t0; h->tensors[1] = t1; h->tensors[2] = t2; h->tensors[3] = t3;
    h->batch.tensors = h->tensors;
    h->batch.count = 4;
}

static void batch_alloc(host_batch *h, int64_t b, int64_t t, int64_t c) {
    memset(h, 0, sizeof(*h));
    h->b = b; h->t = t; h->c = c;
    h->text = calloc((size_t)(b * t), sizeof(int64_t));
    h->tl = calloc((size_t)b, sizeof(int64_t));
    h->codes = calloc((size_t)(b * c), sizeof(int64_t));
    h->cl = calloc((size_t)b, sizeof(int64_t));
    bind(h);
}

static void batch_free(host_batch *h) {
    free(h->text); free(h->tl); free(h->codes); free(h->cl);
}

static void make_batch(host_batch *h, uint64_t seed, uint64_t index, int64_t k, int full_length) {
    uint64_t s = splitmix64((seed << 32) + index);
    for (int64_t i = 0; i < h->b; i++) {
        int64_t tl = full_length ? h->t : h->t / 2 + (int64_t)(lcg_next(&s) % (uint64_t)(h->t - h->t / 2 + 1));
        for (int64_t j = 0; j < h->t; j++) {
            int64_t v = 2 + (int64_t)(lcg_next(&s) % 60);
            h->text[i * h->t + j] = j < tl ? v : 0;
        }
        int64_t cl = 2 * tl < h->c ? 2 * tl : h->c;
        for (int64_t j = 0; j < h->c; j++)
            h->codes[i * h->c + j] = j < cl ? (h->text[i * h->t + j / 2] * 7 + (j % 2) * 3) % k : 0;
        h->tl[i] = tl;
        h->cl[i] = cl;
    }
}

/* Rows [from, from+n) of src as a view-like copy. */
static void batch_slice(host_batch *dst, const host_batch *src, int64_t from, int64_t n) {
    batch_alloc(dst, n, src->t, src->c);
    memcpy(dst->text, src->text + from * src->t, (size_t)(n * src->t) * sizeof(int64_t));
    memcpy(dst->tl, src->tl + from, (size_t)n * sizeof(int64_t));
    memcpy(dst->codes, src->codes + from * src->c, (size_t)(n * src->c) * sizeof(int64_t));
    memcpy(dst->cl, src->cl + from, (size_t)n * sizeof(int64_t));
}

static double metric(const tts_step_result *r, const char *name) {
    for (int i = 0; i < r->metric_count; i++)
        if (strcmp(r->metrics[i].name, name) == 0) return r->metrics[i].value;
    return NAN;
}

/* ---- options ---------------------------------------------------------------------------- */

static const char *g_lib, *g_model, *g_modules, *g_workdir = "/tmp", *g_losses_out;
static int g_threads = 1, g_steps = 200, g_bench = 0, g_jit_optimize = 0;
enum { B = 8, T = 24, C = 48, K = 256 };
static const uint64_t SEED = 0;

static tts_train_config base_config(void) {
    tts_train_config c;
    S.default_config(&c);
    c.lr = 1e-3;
    c.weight_decay = 0.01;
    c.grad_clip = 1.0;
    c.schedule = TTS_SCHEDULE_COSINE;
    c.warmup_steps = 10;
    c.total_steps = 200;
    c.min_lr_ratio = 0.1;
    c.threads = g_threads;
    c.seed = 0;
    c.jit_optimize = g_jit_optimize;
    return c;
}

static tts_model *load_or_die(const char *path, const tts_train_config *c) {
    tts_model *m = NULL;
    tts_status st = S.model_load(path, c, &m);
    if (st != TTS_OK) {
        printf("FAIL load %s: status %d: %s\n", path, st, S.last_error());
        exit(1);
    }
    return m;
}

/* ---- checks ----------------------------------------------------------------------------- */

static double ref_lr(const tts_train_config *c, int64_t step) {
    /* An independent transcription of the formulas in the header. */
    double lr = c->lr, m = c->min_lr_ratio * c->lr;
    int64_t W = c->warmup_steps, Sx = c->total_steps;
    if (step < 0) return 0;
    if (W > 0 && step < W) return lr * (double)(step + 1) / (double)W;
    if (c->schedule == 0) return lr;
    if (c->schedule == 1 || c->schedule == 2) {
        double p = (double)(step - W) / (double)(Sx - W > 1 ? Sx - W : 1);
        p = p < 0 ? 0 : p > 1 ? 1 : p;
        return c->schedule == 1 ? m + (lr - m) * (1 - p) : m + (lr - m) * 0.5 * (1 + cos(M_PI * p));
    }
    int64_t D = llround(c->decay_fraction * (double)Sx);
    if (D > Sx - W) D = Sx - W;
    int64_t D0 = Sx - D;
    if (step < D0) return lr;
    double p = (double)(step - D0) / (double)(D > 1 ? D : 1);
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    return lr - (lr - m) * p;
}

static void check_basics(void) {
    check(S.abi_version() == TTS_SHIM_ABI_VERSION, "abi_version", "%d", S.abi_version());
    check(strcmp(S.last_error(), "") == 0, "last_error empty at start", "");
    tts_device_info info;
    tts_status st = S.device_info(-1, &info);
    check(st == TTS_OK && strcmp(info.name, "cpu") == 0 && info.total_bytes > 0 && info.free_bytes > 0 &&
              info.free_bytes <= info.total_bytes && info.allocated_bytes == 0 && info.is_cuda == 0,
          "device_info(-1)", "%s total=%lld free=%lld", info.name, (long long)info.total_bytes,
          (long long)info.free_bytes);
    int32_t n = S.cuda_device_count();
    check(n >= 0, "cuda_device_count", "%d (built with CUDA: %d)", n, S.built_with_cuda());
    st = S.device_info(n, &info);
    check(st == TTS_ERR_INVALID_ARGUMENT, "device_info(out of range) -> INVALID_ARGUMENT", "%s", S.last_error());
    tts_train_config c = base_config();
    c.device = 0;
    tts_model *m = NULL;
    st = S.model_load(g_model, &c, &m);
    if (n == 0)
        check(st == TTS_ERR_INVALID_ARGUMENT && m == NULL, "load on cuda:0 without CUDA -> INVALID_ARGUMENT", "%s",
              S.last_error());
    else
        S.model_free(m);

    /* LR schedules against an independent transcription of the formulas. */
    const int schedules[] = {0, 1, 2, 3};
    double worst = 0;
    for (int si = 0; si < 4; si++) {
        tts_train_config x = base_config();
        x.schedule = schedules[si];
        x.warmup_steps = 7;
        x.total_steps = 50;
        x.min_lr_ratio = 0.05;
        x.decay_fraction = 0.3;
        for (int64_t s = -1; s < 60; s++) {
            double d = fabs(S.lr_at(&x, s) - ref_lr(&x, s));
            if (d > worst) worst = d;
        }
    }
    tts_train_config x = base_config();
    x.schedule = 2; x.warmup_steps = 10; x.total_steps = 110; x.min_lr_ratio = 0.0;
    int spot = fabs(S.lr_at(&x, 0) - 1e-4) < 1e-15 && fabs(S.lr_at(&x, 9) - 1e-3) < 1e-15 &&
               fabs(S.lr_at(&x, 60) - 0.5e-3) < 1e-12 && S.lr_at(&x, 110) < 1e-15 && S.lr_at(&x, 500) < 1e-15;
    x.schedule = 3; x.warmup_steps = 0; x.total_steps = 100; x.decay_fraction = 0.2; x.min_lr_ratio = 0.1;
    spot = spot && S.lr_at(&x, 79) == 1e-3 && fabs(S.lr_at(&x, 90) - 0.55e-3) < 1e-12 &&
           fabs(S.lr_at(&x, 100) - 1e-4) < 1e-15;
    check(worst < 1e-15 && spot, "lr_at matches the documented formulas", "max |diff| %.3g over 4 schedules", worst);
    x = base_config();
    x.schedule = 9;
    check(isnan(S.lr_at(&x, 0)) && isnan(S.lr_at(NULL, 0)), "lr_at(bad schedule / NULL) is NaN", "");
    x = base_config();
    x.total_steps = 5;
    st = S.model_load(g_model, &x, &m);
    check(st == TTS_ERR_INVALID_ARGUMENT, "config total_steps <= warmup -> INVALID_ARGUMENT", "%s", S.last_error());
}

static void check_training(void) {
    tts_train_config c = base_config();
    c.total_steps = g_steps;
    tts_model *m = load_or_die(g_model, &c);
    check(S.parameter_count(m) > 0 && S.forward_arity(m) == 5 && S.step(m) == 0, "load reference model",
          "%lld parameters, forward takes %d tensors", (long long)S.parameter_count(m), S.forward_arity(m));
    host_batch hb;
    batch_alloc(&hb, B, T, C);
    double *losses = calloc((size_t)g_steps, sizeof(double));
    int lr_ok = 1, names_ok = 1, weights_ok = 1, status_ok = 1;
    double t0 = now_s();
    tts_step_result r;
    for (int s = 0; s < g_steps; s++) {
        make_batch(&hb, SEED, (uint64_t)s, K, 0);
        tts_status st = S.train_step(m, &hb.batch, 1, &r);
        if (st != TTS_OK) {
            printf("  step %d: status %d: %s\n", s, st, S.last_error());
            status_ok = 0;
            break;
        }
        losses[s] = r.metrics[0].value;
        if (r.step != s + 1 || fabs(r.lr - S.lr_at(&c, s)) > 0) lr_ok = 0;
        if (r.metric_count != 4 || strcmp(r.metrics[0].name, "loss") || strcmp(r.metrics[1].name, "text_loss") ||
            strcmp(r.metrics[2].name, "mel_loss") || strcmp(r.metrics[3].name, "mel_top1"))
            names_ok = 0;
        double combo = 0.2 * metric(&r, "text_loss") + 0.8 * metric(&r, "mel_loss");
        if (fabs(combo - losses[s]) > 1e-5) weights_ok = 0;
        if (s % 50 == 0 || s == g_steps - 1)
            printf("  step %3d loss %.4f text_loss %.4f mel_loss %.4f mel_top1 %.3f lr %.2e grad_norm %.3f\n", s + 1,
                   losses[s], metric(&r, "text_loss"), metric(&r, "mel_loss"), metric(&r, "mel_top1"), r.lr,
                   r.grad_norm);
    }
    double secs = now_s() - t0;
    check(status_ok, "train 200 steps", "%d steps in %.2f s (%.1f steps/s, batch %d, %d threads)", g_steps, secs,
          g_steps / secs, B, g_threads);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        first += losses[i] / 10;
        last += losses[g_steps - 10 + i] / 10;
    }
    check(status_ok && last < 0.6 * first, "loss decreases clearly", "mean of first 10 steps %.4f, last 10 %.4f", first,
          last);
    check(lr_ok, "step result: step counter and lr == lr_at(step)", "");
    check(names_ok, "metrics are loss, text_loss, mel_loss, mel_top1", "");
    check(weights_ok, "loss == 0.2 text_loss + 0.8 mel_loss", "");
    if (g_losses_out) {
        FILE *f = fopen(g_losses_out, "w");
        if (f) {
            for (int s = 0; s < g_steps; s++) fprintf(f, "%.9g\n", losses[s]);
            fclose(f);
        }
    }

    /* eval: no step, deterministic, training afterwards unaffected by eval mode. */
    make_batch(&hb, SEED, 999, K, 0);
    tts_step_result e1, e2;
    tts_status st1 = S.eval_step(m, &hb.batch, &e1);
    tts_status st2 = S.eval_step(m, &hb.batch, &e2);
    check(st1 == TTS_OK && st2 == TTS_OK && e1.step == g_steps && S.step(m) == g_steps && e1.metric_count == 4 &&
              e1.metrics[0].value == e2.metrics[0].value && e1.grad_norm == 0,
          "eval_step", "loss %.4f mel_top1 %.3f, step stays %lld", e1.metrics[0].value, metric(&e1, "mel_top1"),
          (long long)e1.step);
    free(losses);
    batch_free(&hb);
    S.model_free(m);
}

static int close_rel(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fmax(fabs(a), fabs(b))); }

static void check_accumulation(void) {
    tts_train_config c = base_config();
    tts_model *a = load_or_die(g_model, &c);
    tts_model *b = load_or_die(g_model, &c);
    host_batch full, parts[4];
    batch_alloc(&full, 8, T, C);
    double worst = 0;
    int ok = 1;
    for (int s = 0; s < 3; s++) {
        make_batch(&full, SEED, 1000 + (uint64_t)s, K, 1); /* equal lengths: token-weighted means agree */
        tts_batch mb[4];
        for (int i = 0; i < 4; i++) {
            batch_slice(&parts[i], &full, 2 * i, 2);
            mb[i] = parts[i].batch;
        }
        tts_step_result ra, rb;
        if (S.train_step(a, &full.batch, 1, &ra) != TTS_OK || S.train_step(b, mb, 4, &rb) != TTS_OK) {
            printf("  accumulation step failed: %s\n", S.last_error());
            ok = 0;
        } else {
            for (int i = 0; i < 4; i++) {
                double d = fabs(ra.metrics[i].value - rb.metrics[i].value);
                if (d > worst) worst = d;
                if (!close_rel(ra.metrics[i].value, rb.metrics[i].value, 1e-5)) ok = 0;
            }
            if (!close_rel(ra.grad_norm, rb.grad_norm, 1e-5)) ok = 0;
            printf("  step %d: batch 8 loss %.7f grad_norm %.7f | 4 x 2 loss %.7f grad_norm %.7f\n", s + 1,
                   ra.metrics[0].value, ra.grad_norm, rb.metrics[0].value, rb.grad_norm);
        }
        for (int i = 0; i < 4; i++) batch_free(&parts[i]);
    }
    /* After 3 updates, the same eval batch must give the same loss on both models. */
    make_batch(&full, SEED, 2000, K, 1);
    tts_step_result ea, eb;
    S.eval_step(a, &full.batch, &ea);
    S.eval_step(b, &full.batch, &eb);
    if (!close_rel(ea.metrics[0].value, eb.metrics[0].value, 1e-5)) ok = 0;
    check(ok, "accum 4 x batch 2 == batch 8 (1e-5)", "max |diff| of metrics %.3g; eval after 3 steps %.7f vs %.7f",
          worst, ea.metrics[0].value, eb.metrics[0].value);
    batch_free(&full);
    S.model_free(a);
    S.model_free(b);
}

static void check_clipping(void) {
    tts_train_config c = base_config();
    c.grad_clip = 0.05;
    tts_model *m = load_or_die(g_model, &c);
    c.grad_clip = 0;
    tts_model *n = load_or_die(g_model, &c);
    host_batch hb;
    batch_alloc(&hb, B, T, C);
    make_batch(&hb, SEED, 0, K, 0);
    tts_step_result r, rn;
    tts_status st = S.train_step(m, &hb.batch, 1, &r);
    tts_status stn = S.train_step(n, &hb.batch, 1, &rn);
    check(st == TTS_OK && stn == TTS_OK && r.grad_norm > 0.05 && fabs(r.grad_norm_clipped - 0.05) < 1e-6 &&
              close_rel(r.grad_norm, rn.grad_norm, 1e-6) && rn.grad_norm_clipped == rn.grad_norm && r.skipped == 0,
          "clipping", "pre-clip %.5f, after clip to 0.05: %.7f; no clipping: %.5f / %.5f", r.grad_norm,
          r.grad_norm_clipped, rn.grad_norm, rn.grad_norm_clipped);
    batch_free(&hb);
    S.model_free(m);
    S.model_free(n);
}

static void check_resume(void) {
    const int N = 10;
    tts_train_config c = base_config();
    c.total_steps = 2 * N;
    c.warmup_steps = 3;
    host_batch hb;
    batch_alloc(&hb, B, T, C);
    double straight[2 * N], resumed[2 * N];
    tts_step_result r;
    tts_model *x = load_or_die(g_model, &c);
    for (int s = 0; s < 2 * N; s++) {
        make_batch(&hb, SEED, 500 + (uint64_t)s, K, 0);
        S.train_step(x, &hb.batch, 1, &r);
        straight[s] = r.metrics[0].value;
    }
    S.model_free(x);

    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/shim_smoke_%d.ckpt", g_workdir, (int)getpid());
    const char *extra = "{\"epoch\":0,\"position\":10,\"note\":\"\xed\x95\x9c\xea\xb8\x80\"}";
    tts_model *y = load_or_die(g_model, &c);
    for (int s = 0; s < N; s++) {
        make_batch(&hb, SEED, 500 + (uint64_t)s, K, 0);
        S.train_step(y, &hb.batch, 1, &r);
        resumed[s] = r.metrics[0].value;
    }
    tts_status st = S.save_checkpoint(y, ckpt, extra);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", ckpt);
    check(st == TTS_OK && access(ckpt, F_OK) == 0 && access(tmp, F_OK) != 0, "save_checkpoint (tmp + rename)", "%s",
          st == TTS_OK ? ckpt : S.last_error());
    S.model_free(y);

    char small[8];
    int64_t len = -1, step = -1;
    st = S.read_checkpoint_extra(ckpt, NULL, 0, &len, &step);
    check(st == TTS_OK && len == (int64_t)strlen(extra) && step == N, "read_checkpoint_extra", "length %lld step %lld",
          (long long)len, (long long)step);

    tts_model *z = load_or_die(g_model, &c);
    st = S.load_checkpoint(z, ckpt, small, sizeof small, &len);
    check(st == TTS_ERR_INVALID_ARGUMENT && S.step(z) == 0, "load_checkpoint with a small buffer -> INVALID_ARGUMENT",
          "%s", S.last_error());
    char buf[256];
    st = S.load_checkpoint(z, ckpt, buf, sizeof buf, &len);
    check(st == TTS_OK && S.step(z) == N && strcmp(buf, extra) == 0, "load_checkpoint restores step and extra_json",
          "step %lld extra %s", (long long)S.step(z), st == TTS_OK ? buf : S.last_error());
    for (int s = N; s < 2 * N; s++) {
        make_batch(&hb, SEED, 500 + (uint64_t)s, K, 0);
        S.train_step(z, &hb.batch, 1, &r);
        resumed[s] = r.metrics[0].value;
    }
    double worst = 0;
    for (int s = 0; s < 2 * N; s++) worst = fmax(worst, fabs(straight[s] - resumed[s]));
    check(worst <= 1e-6, "exact resume: 2N straight == N + save/load + N (1e-6)", "max |diff| %.3g over %d steps",
          worst, 2 * N);

    /* A checkpoint of another model is refused and leaves the model untouched. */
    char other[4096];
    snprintf(other, sizeof other, "%s/no_loss.pt", g_modules);
    tts_model *o = load_or_die(other, &c);
    st = S.load_checkpoint(o, ckpt, NULL, 0, NULL);
    check(st == TTS_ERR_IO && S.step(o) == 0, "checkpoint of another model -> IO", "%s", S.last_error());
    st = S.load_checkpoint(z, "/nonexistent/ckpt", NULL, 0, NULL);
    check(st == TTS_ERR_IO, "missing checkpoint -> IO", "%s", S.last_error());
    st = S.save_checkpoint(z, "/nonexistent/dir/ckpt", NULL);
    check(st == TTS_ERR_IO, "unwritable checkpoint path -> IO", "%s", S.last_error());
    S.model_free(o);
    S.model_free(z);
    unlink(ckpt);
    batch_free(&hb);
}

static void check_errors(void) {
    tts_train_config c = base_config();
    tts_model *m = NULL;
    char path[4096];
    tts_status st = S.model_load("/nonexistent/model.pt", &c, &m);
    check(st == TTS_ERR_LOAD && m == NULL && *S.last_error(), "bad model path -> LOAD", "%s", S.last_error());
    snprintf(path, sizeof path, "%s/not_torchscript.pt", g_modules);
    st = S.model_load(path, &c, &m);
    check(st == TTS_ERR_LOAD && m == NULL, "not a TorchScript file -> LOAD", "%.160s", S.last_error());
    snprintf(path, sizeof path, "%s/no_forward.pt", g_modules);
    st = S.model_load(path, &c, &m);
    check(st == TTS_ERR_CONTRACT && m == NULL, "module without forward -> CONTRACT", "%s", S.last_error());
    snprintf(path, sizeof path, "%s/plain_forward.pt", g_modules);
    st = S.model_load(path, &c, &m);
    check(st == TTS_ERR_CONTRACT && m == NULL, "forward returning a Tensor -> CONTRACT", "%s", S.last_error());

    host_batch hb;
    batch_alloc(&hb, B, T, C);
    make_batch(&hb, SEED, 0, K, 0);
    tts_step_result r;
    snprintf(path, sizeof path, "%s/no_loss.pt", g_modules);
    m = load_or_die(path, &c);
    st = S.train_step(m, &hb.batch, 1, &r);
    check(st == TTS_ERR_CONTRACT && S.step(m) == 0, "dict without 'loss' -> CONTRACT", "%s", S.last_error());
    st = S.eval_step(m, &hb.batch, &r);
    check(st == TTS_ERR_CONTRACT, "eval: dict without 'loss' -> CONTRACT", "");
    S.model_free(m);
    snprintf(path, sizeof path, "%s/vector_loss.pt", g_modules);
    m = load_or_die(path, &c);
    st = S.train_step(m, &hb.batch, 1, &r);
    check(st == TTS_ERR_CONTRACT, "non-scalar loss -> CONTRACT", "%s", S.last_error());
    S.model_free(m);

    m = load_or_die(g_model, &c);
    /* text_lengths with 3 entries for a batch of 8: forward raises a shape error. */
    host_batch bad = hb;
    bind(&bad);
    bad.shape_tl[0] = 3;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "shape mismatch inside forward -> SHAPE", "%.200s", S.last_error());
    /* 1-D text_ids. */
    bind(&bad);
    bad.tensors[0].ndim = 1;
    bad.shape_text[0] = B * T;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "1-D text_ids -> SHAPE", "%.120s", S.last_error());
    bind(&bad);
    bad.tensors[2].dtype = 7;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "bad dtype code -> SHAPE", "%s", S.last_error());
    bind(&bad);
    bad.tensors[2].ndim = 9;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "ndim 9 -> SHAPE", "%s", S.last_error());
    bind(&bad);
    bad.batch.count = 3;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "3 tensors for a 4-argument forward -> SHAPE", "%s", S.last_error());
    bind(&bad);
    bad.tensors[1].name = "code_lengths";
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "tensor name not matching forward's argument -> SHAPE", "%s", S.last_error());
    bind(&bad);
    bad.tensors[3].data = NULL;
    st = S.train_step(m, &bad.batch, 1, &r);
    check(st == TTS_ERR_SHAPE, "NULL data -> SHAPE", "%s", S.last_error());
    bind(&bad);
    int64_t saved = bad.text[0];
    bad.text[0] = 100000; /* an id past the text vocabulary */
    st = S.train_step(m, &bad.batch, 1, &r);
    bad.text[0] = saved;
    check(st == TTS_ERR_SHAPE, "token id out of range -> SHAPE", "%.120s", S.last_error());
    bind(&bad);
    tts_tensor as_int32[4];
    memcpy(as_int32, bad.tensors, sizeof as_int32);
    int32_t tl32[B];
    for (int i = 0; i < B; i++) tl32[i] = (int32_t)hb.tl[i];
    as_int32[1].dtype = TTS_DTYPE_INT32;
    as_int32[1].data = tl32;
    tts_batch b32 = {as_int32, 4};
    st = S.train_step(m, &b32, 1, &r);
    check(st == TTS_OK, "int32 lengths are accepted (the model casts)", "%s", S.last_error());
    st = S.train_step(m, NULL, 1, &r);
    check(st == TTS_ERR_INVALID_ARGUMENT, "NULL batch -> INVALID_ARGUMENT", "%s", S.last_error());
    st = S.train_step(m, &hb.batch, 0, &r);
    check(st == TTS_ERR_INVALID_ARGUMENT, "0 micro-batches -> INVALID_ARGUMENT", "%s", S.last_error());
    st = S.train_step(NULL, &hb.batch, 1, &r);
    check(st == TTS_ERR_INVALID_ARGUMENT, "NULL model -> INVALID_ARGUMENT", "");
    int64_t before = S.step(m);
    st = S.train_step(m, &hb.batch, 1, &r);
    check(st == TTS_OK && S.step(m) == before + 1 && *S.last_error() == 0, "model still trains after the errors",
          "step %lld", (long long)S.step(m));
    S.model_free(m);
    batch_free(&hb);
}

static void check_oom(void) {
    tts_train_config c = base_config();
    c.oom_at_batch = 8;
    tts_model *p = load_or_die(g_model, &c);
    c.oom_at_batch = 0;
    tts_model *q = load_or_die(g_model, &c);
    host_batch hb, h4a, h4b;
    batch_alloc(&hb, 8, T, C);
    make_batch(&hb, SEED, 0, K, 0);
    tts_step_result r, rq;
    tts_status st = S.train_step(p, &hb.batch, 1, &r);
    check(st == TTS_ERR_OUT_OF_MEMORY && S.step(p) == 0, "oom_at_batch 8: batch 8 -> OUT_OF_MEMORY, step not counted",
          "%s", S.last_error());
    /* OOM in the second micro-batch, after the first one's backward: gradients must be dropped. */
    batch_slice(&h4a, &hb, 0, 4);
    tts_batch mixed[2] = {h4a.batch, hb.batch};
    st = S.train_step(p, mixed, 2, &r);
    check(st == TTS_ERR_OUT_OF_MEMORY && S.step(p) == 0, "OOM in micro-batch 2 of 2 -> OUT_OF_MEMORY", "");
    /* Retry: 2 micro-batches of 4 (the worker's downshift). */
    batch_slice(&h4b, &hb, 4, 4);
    tts_batch halves[2] = {h4a.batch, h4b.batch};
    st = S.train_step(p, halves, 2, &r);
    tts_status stq = S.train_step(q, halves, 2, &rq);
    check(st == TTS_OK && stq == TTS_OK && S.step(p) == 1 && r.metrics[0].value == rq.metrics[0].value &&
              r.grad_norm == rq.grad_norm,
          "retry with 2 x 4 works and matches a model that never hit OOM", "loss %.6f vs %.6f", r.metrics[0].value,
          rq.metrics[0].value);
    st = S.eval_step(p, &hb.batch, &r);
    check(st == TTS_ERR_OUT_OF_MEMORY, "eval batch 8 -> OUT_OF_MEMORY", "");
    batch_free(&hb);
    batch_free(&h4a);
    batch_free(&h4b);
    S.model_free(p);
    S.model_free(q);
}

static int bench(void) {
    tts_train_config c = base_config();
    c.total_steps = g_bench;
    tts_model *m = load_or_die(g_model, &c);
    host_batch *batches = calloc((size_t)g_bench, sizeof(host_batch));
    for (int s = 0; s < g_bench; s++) {
        batch_alloc(&batches[s], B, T, C);
        make_batch(&batches[s], SEED, (uint64_t)s, K, 0);
    }
    tts_step_result r;
    const int warm = 5;
    double t0 = 0, c0 = 0, first = 0;
    for (int s = 0; s < g_bench; s++) {
        if (s == warm) {
            t0 = now_s();
            c0 = cpu_s();
        }
        if (S.train_step(m, &batches[s].batch, 1, &r) != TTS_OK) {
            fprintf(stderr, "step %d: %s\n", s, S.last_error());
            return 1;
        }
        if (s == 0) first = r.metrics[0].value;
    }
    double secs = now_s() - t0, cpu = cpu_s() - c0;
    printf("{\"runner\": \"shim\", \"steps_per_second\": %.3f, \"steps_per_cpu_second\": %.3f, \"steps\": %d, \"timed_steps\": %d, \"batch\": %d, "
           "\"threads\": %d, \"jit_optimize\": %d, \"first_loss\": %.6f, \"last_loss\": %.6f}\n",
           (g_bench - warm) / secs, (g_bench - warm) / cpu, g_bench, g_bench - warm, B, g_threads, g_jit_optimize, first, r.metrics[0].value);
    for (int s = 0; s < g_bench; s++) batch_free(&batches[s]);
    free(batches);
    S.model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--lib") && v) g_lib = argv[++i];
        else if (!strcmp(a, "--model") && v) g_model = argv[++i];
        else if (!strcmp(a, "--modules") && v) g_modules = argv[++i];
        else if (!strcmp(a, "--workdir") && v) g_workdir = argv[++i];
        else if (!strcmp(a, "--losses-out") && v) g_losses_out = argv[++i];
        else if (!strcmp(a, "--threads") && v) g_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--steps") && v) g_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--bench") && v) g_bench = atoi(argv[++i]);
        else if (!strcmp(a, "--jit-optimize")) g_jit_optimize = 1;
        else {
            fprintf(stderr, "usage: %s --lib SO --model PT [--modules DIR] [--threads N] [--steps N] [--bench N] [--jit-optimize]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!g_lib || !g_model || (!g_bench && !g_modules) || g_steps < 20) {
        fprintf(stderr, "--lib, --model and --modules are required (--steps >= 20)\n");
        return 2;
    }
    void *h = dlopen(g_lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    if (!resolve(h)) return 1;
    if (g_bench) return bench();
    check_basics();
    check_errors();
    check_training();
    check_accumulation();
    check_clipping();
    check_resume();
    check_oom();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
