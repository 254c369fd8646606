/*
 * tts_torch_shim.h - the plain-C ABI of the libtorch training shim (libtts_torch_shim.so).
 *
 * The shim trains a TorchScript module that keeps the training contract of CONTRACT.md
 * (forward(batch tensors...) -> Dict[str, Tensor] with 'loss') with no Python in the loop:
 * forward, backward with gradient accumulation, gradient-norm clipping, AdamW, an LR schedule,
 * bf16 autocast on CUDA, checkpoints with exact resume, device queries. It also runs two kinds of
 * inference: synthesis with a trained module (ABI 2) and waveform embeddings with an
 * inference-only module such as the speaker encoder of the SIM metric (ABI 3); synthesis in the
 * voice of a prompt (ABI 4). Data-parallel training over a c10d process group (ABI 5).
 *
 * ABI rules
 *  - C99, plain C types and opaque handles only. Every function is safe to call with bad input:
 *    no C++ exception crosses this boundary; failures return a tts_status and set a message
 *    (tts_shim_last_error).
 *  - Versioning: TTS_SHIM_ABI_VERSION is bumped whenever a struct layout or a function signature
 *    changes. A caller that dlopens the library must compare tts_shim_abi_version() with the
 *    version it was compiled against and refuse a mismatch.
 *  - Threads: a tts_model handle must be used by one thread at a time (the caller serialises).
 *    Different handles may be used from different threads, but torch's intra-op thread count
 *    (tts_train_config.threads) and the default CPU random generator are process-wide.
 *  - Memory: every pointer passed in is only read during the call (nothing is retained); the
 *    tensor data of a batch is copied. Out-structs are written by the shim; the caller owns them.
 */
#ifndef TTS_TORCH_SHIM_H
#define TTS_TORCH_SHIM_H

#include <stdint.h>

#if defined(TTS_SHIM_BUILDING)
#define TTS_SHIM_API __attribute__((visibility("default")))
#else
#define TTS_SHIM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version --------------------------------------------------------------------------- */

#define TTS_SHIM_ABI_VERSION 5

/* The ABI version the library was built with (TTS_SHIM_ABI_VERSION of its header). */
TTS_SHIM_API int tts_shim_abi_version(void);

/* ---- status codes and errors ----------------------------------------------------------- */

typedef int32_t tts_status;
#define TTS_OK 0
#define TTS_ERR_INVALID_ARGUMENT 1 /* NULL pointer, count <= 0, config out of range, bad device */
#define TTS_ERR_LOAD 2             /* model path missing / unreadable / not a TorchScript archive */
#define TTS_ERR_CONTRACT 3         /* module breaks the contract: no forward, forward does not return
                                      Dict[str, Tensor], no 'loss', loss not a scalar / not
                                      differentiable, more than 32 entries, a name >= 64 bytes */
#define TTS_ERR_SHAPE 4            /* a batch does not fit: bad tts_tensor (dtype, ndim, shape, NULL
                                      data), tensor count or names not matching forward's arguments,
                                      micro-batches of different layouts, or a shape / size / dtype /
                                      index error raised inside forward (torch's message is kept) */
#define TTS_ERR_OUT_OF_MEMORY 5    /* device out of memory (or the oom_at_batch stand-in); the step
                                      was not counted and gradients were zeroed: retry smaller */
#define TTS_ERR_IO 6               /* checkpoint read/write failed, or the checkpoint does not fit the
                                      model (missing / extra / differently shaped tensors) */
#define TTS_ERR_INTERNAL 7         /* anything else (other errors raised by torch or forward) */
#define TTS_ERR_PEER 8             /* (ABI 5) a collective of a data-parallel group failed: a peer
                                      rank's step failed, or a peer left, or did not answer within
                                      the group's timeout; the step was not counted */

/* Message of the most recent tts_status-returning call on this thread. Never NULL; "" when that
 * call succeeded (every such call clears it on entry). The pointer stays valid until the next
 * shim call on this thread. */
TTS_SHIM_API const char *tts_shim_last_error(void);

/* ---- devices --------------------------------------------------------------------------- */

/* Number of CUDA devices torch sees (0 on a CPU-only libtorch or without a driver). Never fails. */
TTS_SHIM_API int32_t tts_shim_cuda_device_count(void);

/* 1 if the library was compiled against a CUDA-enabled libtorch (TTS_SHIM_WITH_CUDA), else 0. */
TTS_SHIM_API int32_t tts_shim_built_with_cuda(void);

typedef struct tts_device_info {
    char name[256];          /* "cpu", or the CUDA device name (e.g. "NVIDIA RTX A6000") */
    int64_t total_bytes;     /* CPU: MemTotal of /proc/meminfo; CUDA: cudaMemGetInfo total */
    int64_t free_bytes;      /* CPU: MemAvailable of /proc/meminfo; CUDA: cudaMemGetInfo free */
    int64_t allocated_bytes; /* CPU: 0; CUDA: bytes currently allocated by torch's caching
                                allocator on that device (its reserved-but-free cache excluded) */
    int32_t is_cuda;         /* 0 for the CPU, 1 for a CUDA device */
} tts_device_info;

/* index -1: the CPU; 0..count-1: CUDA device N. Out-of-range index: TTS_ERR_INVALID_ARGUMENT. */
TTS_SHIM_API tts_status tts_shim_device_info(int32_t index, tts_device_info *out);

/* ---- training configuration ------------------------------------------------------------ */

#define TTS_SCHEDULE_CONSTANT 0 /* warmup (if any), then lr */
#define TTS_SCHEDULE_LINEAR 1   /* warmup, then linear decay from lr to min_lr_ratio*lr */
#define TTS_SCHEDULE_COSINE 2   /* warmup, then cosine decay from lr to min_lr_ratio*lr */
#define TTS_SCHEDULE_WSD 3      /* warmup, stable at lr, then linear decay over the last
                                   decay_fraction of total_steps to min_lr_ratio*lr */

typedef struct tts_train_config {
    double lr;           /* peak learning rate (>= 0) */
    double beta1, beta2; /* AdamW betas, each in [0, 1) */
    double eps;          /* AdamW epsilon (>= 0) */
    double weight_decay; /* AdamW decoupled weight decay (>= 0) */
    double grad_clip;    /* max total L2 norm of the gradients; <= 0: no clipping */
    int32_t schedule;    /* TTS_SCHEDULE_*: 0 constant, 1 linear, 2 cosine, 3 warmup-stable-decay */
    int64_t warmup_steps; /* >= 0 */
    int64_t total_steps;  /* schedules 1-3: must be > warmup_steps; ignored by constant */
    double min_lr_ratio;  /* in [0, 1]: the floor of the decay, as a fraction of lr */
    double decay_fraction; /* WSD only, in [0, 1]: the last fraction of total_steps decays */
    int32_t device;       /* -1: cpu; N >= 0: cuda:N (TTS_ERR_INVALID_ARGUMENT if absent) */
    int32_t amp;          /* 1: bf16 autocast around forward on CUDA; no-op on CPU */
    int64_t seed;         /* torch::manual_seed(seed) at model load (CPU and CUDA generators) */
    int32_t threads;      /* > 0: torch::set_num_threads(threads) (process-wide); 0: leave as is */
    int32_t oom_at_batch; /* test stand-in: a micro-batch whose first tensor's first dimension is
                             >= this fails with TTS_ERR_OUT_OF_MEMORY, exactly as a real CUDA OOM
                             would (checked before forward, in train and eval); 0 = off */
    int32_t jit_optimize; /* 0 (default): TorchScript's graph optimiser (profiling executor) off,
                             plain interpreter + eager autograd: results do not depend on how
                             many calls came before, which exact resume needs. 1: optimiser on
                             (fusion on CUDA). Process-wide (torch::jit::setGraphExecutorOptimize). */
} tts_train_config;

/* Defaults: lr 1e-4, betas 0.9/0.999, eps 1e-8, weight_decay 0.01, grad_clip 1.0, cosine,
 * warmup 0, total_steps 1000, min_lr_ratio 0, decay_fraction 0.1, device -1, amp 0, seed 0,
 * threads 0, oom_at_batch 0, jit_optimize 0. */
TTS_SHIM_API void tts_shim_default_config(tts_train_config *out);

/*
 * The learning rate used by optimizer step `step` (0-based: the first step is step 0).
 * A pure function of the config; train_step uses exactly this. With lr = c->lr,
 * W = warmup_steps, S = total_steps, m = min_lr_ratio * lr:
 *
 *   step < 0                        -> 0
 *   step < W (all schedules)        -> lr * (step + 1) / W            (linear warmup)
 *   constant                        -> lr
 *   linear:  p = clamp((step - W) / max(1, S - W), 0, 1)  -> m + (lr - m) * (1 - p)
 *   cosine:  p as for linear                               -> m + (lr - m) * 0.5 * (1 + cos(pi p))
 *   wsd:     D = min(round(decay_fraction * S), S - W), D0 = S - D (decay start)
 *            step < D0 -> lr;   else p = clamp((step - D0) / max(1, D), 0, 1) -> lr - (lr - m) p
 *
 * So the LR reaches lr at step W-1 and the floor m at step S (and stays there after S).
 * round() is round-half-away-from-zero. Returns NaN for a NULL config or an unknown schedule.
 */
TTS_SHIM_API double tts_shim_lr_at(const tts_train_config *c, int64_t step);

/* ---- model ----------------------------------------------------------------------------- */

typedef struct tts_model tts_model;

/* Load a TorchScript module (torch.jit.save output) onto config->device, in train mode, and
 * create its AdamW optimizer over every parameter with requires_grad. The config is copied.
 * The forward schema is checked: a module without forward, or whose forward is not declared to
 * return Dict[str, Tensor], is rejected with TTS_ERR_CONTRACT. A missing file or a file that is
 * not TorchScript: TTS_ERR_LOAD. A bad config: TTS_ERR_INVALID_ARGUMENT. *out is NULL on error. */
TTS_SHIM_API tts_status tts_shim_model_load(const char *torchscript_path, const tts_train_config *config,
                                            tts_model **out);

/* Free a model (NULL is fine). */
TTS_SHIM_API void tts_shim_model_free(tts_model *m);

/* Optimizer steps done so far (restored by tts_shim_load_checkpoint). -1 for NULL. */
TTS_SHIM_API int64_t tts_shim_step(const tts_model *m);

/* Total number of parameter elements (trainable or not). -1 for NULL. */
TTS_SHIM_API int64_t tts_shim_parameter_count(const tts_model *m);

/* Number of forward arguments after self (what a batch must provide); -1 for NULL. */
TTS_SHIM_API int32_t tts_shim_forward_arity(const tts_model *m);

/* ---- batches --------------------------------------------------------------------------- */

#define TTS_DTYPE_INT64 0
#define TTS_DTYPE_INT32 1
#define TTS_DTYPE_FLOAT32 2

/* One input tensor: dense, C-contiguous (row-major), host memory. */
typedef struct tts_tensor {
    const char *name;     /* optional (NULL or "" = unchecked); if set, it must equal the name of
                             forward's argument at this position, else TTS_ERR_SHAPE */
    int32_t dtype;        /* TTS_DTYPE_*: 0 int64, 1 int32, 2 float32 (passed to forward as is) */
    int32_t ndim;         /* 0..8 */
    const int64_t *shape; /* ndim sizes, each >= 0 (may be NULL when ndim == 0) */
    const void *data;     /* prod(shape) elements; may be NULL only when that product is 0 */
} tts_tensor;

/* A batch: forward is called as forward(tensors[0], ..., tensors[count-1]) - positional
 * arguments in the order given (arguments with defaults may be left off at the end). */
typedef struct tts_batch {
    const tts_tensor *tensors;
    int32_t count;
} tts_batch;

/* ---- results --------------------------------------------------------------------------- */

typedef struct tts_metric {
    char name[64];
    double value;
} tts_metric;

typedef struct tts_step_result {
    int64_t step;      /* optimizer steps done after this call (eval: unchanged) */
    double lr;         /* lr used for this step (eval: the lr the next step will use) */
    double grad_norm;  /* total L2 norm of all gradients before clipping (eval: 0) */
    int32_t metric_count;
    tts_metric metrics[32]; /* metrics[0] is 'loss', then every other entry of the returned dict in
                               its insertion order; each the mean over the micro-batches of the
                               entry's value (a non-scalar entry is reduced with .mean() first) */
    double grad_norm_clipped; /* total L2 norm after clipping, measured (== grad_norm when not
                                 clipped; eval: 0) */
    int32_t skipped;   /* 1 if the gradient norm was not finite (NaN/inf): the AdamW update was
                          skipped and gradients zeroed, but the step was counted; else 0 */
} tts_step_result;

/*
 * One optimizer step with gradient accumulation over `count` micro-batches (count >= 1; all
 * with the same tensor count, names, dtypes and ndims). For each micro-batch: the oom_at_batch
 * check, forward (bf16 autocast on CUDA when amp), 'loss' must be a floating scalar that requires
 * grad, backward of loss / count. Then: total gradient norm (reported), clipping to grad_clip,
 * lr = tts_shim_lr_at(config, step), AdamW step, gradients zeroed, step += 1.
 * On any error the step is not counted, gradients are zeroed and the parameters/optimizer are
 * untouched (errors are detected before the update), so the caller may retry, e.g. with smaller
 * micro-batches after TTS_ERR_OUT_OF_MEMORY. *out is written only on success.
 */
TTS_SHIM_API tts_status tts_shim_train_step(tts_model *m, const tts_batch *micro_batches, int32_t count,
                                            tts_step_result *out);

/* Forward only, under no_grad, with the module in eval mode (restored to train mode after).
 * Metrics as for train_step (one batch). */
TTS_SHIM_API tts_status tts_shim_eval_step(tts_model *m, const tts_batch *batch, tts_step_result *out);

/* ---- checkpoints ----------------------------------------------------------------------- */

/*
 * Write a checkpoint: every parameter and buffer (by qualified name), the AdamW state
 * (exp_avg, exp_avg_sq, per-parameter step, param-group options), the step (the LR schedule is a
 * pure function of it), the CPU random generator state (and the CUDA generator's when on CUDA),
 * and extra_json (an opaque caller string, e.g. the data loader's position; NULL = "").
 * Format: a torch::serialize::OutputArchive (the zip format of torch.jit.save; see CONTRACT.md).
 * Written to path + ".tmp", fsync'ed, renamed over path, then the directory is fsync'ed.
 * Failure: TTS_ERR_IO (the .tmp file is removed).
 */
TTS_SHIM_API tts_status tts_shim_save_checkpoint(tts_model *m, const char *path, const char *extra_json);

/*
 * Restore everything save_checkpoint wrote into a model loaded from the same TorchScript file
 * (names and shapes must match, else TTS_ERR_IO and the model is untouched: everything is read
 * and checked before anything is applied).
 * extra_json: *extra_length (if not NULL) receives strlen of the stored string. If
 * extra_json_out is not NULL it receives the string NUL-terminated; capacity must be at least
 * length + 1, else TTS_ERR_INVALID_ARGUMENT and nothing is restored (call
 * tts_shim_read_checkpoint_extra first to size the buffer, or pass NULL to skip it).
 */
TTS_SHIM_API tts_status tts_shim_load_checkpoint(tts_model *m, const char *path, char *extra_json_out,
                                                 int64_t capacity, int64_t *extra_length);

/* Read only the extra_json and step of a checkpoint, without a model. Same buffer rules as
 * tts_shim_load_checkpoint; step_out may be NULL. */
TTS_SHIM_API tts_status tts_shim_read_checkpoint_extra(const char *path, char *extra_json_out, int64_t capacity,
                                                       int64_t *extra_length, int64_t *step_out);

/* ---- synthesis (ABI 2) ------------------------------------------------------------------ */

/*
 * Speech synthesis with a module that also exports (CONTRACT.md, "Synthesis"):
 *     synthesize(text: str, max_codes: int) -> Tensor     waveform, 1-D float, in [-1, 1]
 *     synthesis_sample_rate() -> int                       Hz of that waveform
 * (both with @torch.jit.export). The text is passed as UTF-8 (NFC-normalise it first); the
 * module tokenises it. Runs in eval mode (dropout off) under no_grad with the model's current
 * parameters (load a checkpoint first), then puts the module back in training mode.
 */

/* 1 if the module exports synthesize and synthesis_sample_rate, else 0 (-1 for NULL). */
TTS_SHIM_API int32_t tts_shim_has_synthesize(const tts_model *m);

/*
 * Synthesize text (UTF-8, NUL-terminated) with at most max_codes codes (> 0). On success
 * *samples_out points to *count_out floats (free it with tts_shim_free_samples) and
 * *sample_rate_out holds the rate. Failures: TTS_ERR_CONTRACT (no synthesize method, or it
 * returned something other than a 1-D floating tensor, or a rate <= 0),
 * TTS_ERR_OUT_OF_MEMORY, TTS_ERR_INTERNAL (the method raised: the message says why); the
 * out-parameters are then NULL / 0.
 */
TTS_SHIM_API tts_status tts_shim_synthesize(tts_model *m, const char *text, int64_t max_codes, float **samples_out,
                                            int64_t *count_out, int32_t *sample_rate_out);

/*
 * ABI 4: synthesis in the voice of a prompt. A module whose synthesize takes a third argument
 *     synthesize(text: str, max_codes: int, prompt: Optional[Tensor] = None) -> Tensor
 * gets the prompt's samples (1-D float32, at synthesis_sample_rate()) there.
 * tts_shim_synthesize_accepts_prompt: 1 if the module's synthesize has that third argument,
 * 0 if it takes (text, max_codes) only or there is no synthesize, -1 for NULL.
 * tts_shim_synthesize_with_prompt: as tts_shim_synthesize; prompt NULL or prompt_count 0 calls
 * synthesize(text, max_codes) (any module), otherwise synthesize(text, max_codes, prompt), and a
 * module whose synthesize takes no prompt is TTS_ERR_CONTRACT. A NaN or infinite prompt sample:
 * TTS_ERR_INVALID_ARGUMENT. The samples are copied; nothing is retained.
 */
TTS_SHIM_API int32_t tts_shim_synthesize_accepts_prompt(const tts_model *m);
/* The module's synthesis_sample_rate() (the rate of its output and of a prompt), or 0 when it
 * has none or it is not a positive int; -1 for NULL. */
TTS_SHIM_API int32_t tts_shim_synthesis_sample_rate(tts_model *m);
TTS_SHIM_API tts_status tts_shim_synthesize_with_prompt(tts_model *m, const char *text, int64_t max_codes,
                                                        const float *prompt, int64_t prompt_count,
                                                        float **samples_out, int64_t *count_out,
                                                        int32_t *sample_rate_out);

/* Free samples returned by tts_shim_synthesize / tts_shim_synthesize_with_prompt (NULL is ignored). */
TTS_SHIM_API void tts_shim_free_samples(float *samples);

/* ---- waveform embeddings (ABI 3) -------------------------------------------------------- */

/*
 * An inference-only TorchScript module (no training contract, no optimizer) that exports, with
 * @torch.jit.export (CONTRACT.md, "Embeddings"):
 *     embed_waveform(wav: Tensor) -> Tensor   1-D float32 waveform -> 1-D floating embedding
 *     embedding_sample_rate() -> int          the rate (Hz) the waveform must have
 * e.g. the speaker encoder of scripts/torch/export_speaker_encoder.py (Resemblyzer's GE2E encoder,
 * 16 kHz in, 256-d L2-normalised utterance embedding out).
 */
typedef struct tts_encoder tts_encoder;

/*
 * Load such a module onto device (-1: cpu; N >= 0: cuda:N) in eval mode. threads > 0 calls
 * torch::set_num_threads(threads) (process-wide, as tts_train_config.threads); 0 leaves it.
 * Failures: TTS_ERR_INVALID_ARGUMENT (NULL path or out, bad device, threads < 0), TTS_ERR_LOAD
 * (missing file, not TorchScript), TTS_ERR_CONTRACT (either method missing, or a sample rate that
 * is not a positive int). *out is NULL on error.
 */
TTS_SHIM_API tts_status tts_shim_encoder_load(const char *torchscript_path, int32_t device, int32_t threads,
                                              tts_encoder **out);

/* Free an encoder (NULL is fine). */
TTS_SHIM_API void tts_shim_encoder_free(tts_encoder *e);

/* The sample rate embed_waveform expects (read once at load); -1 for NULL. */
TTS_SHIM_API int32_t tts_shim_encoder_sample_rate(const tts_encoder *e);

/*
 * Embed `count` float samples (mono, at tts_shim_encoder_sample_rate, in [-1, 1]): calls
 * embed_waveform under no_grad and copies the result (as float32) to out[0 .. len-1].
 * *out_len (if not NULL) receives len whenever the module returned an embedding, also when
 * capacity is too small. The samples are only read during the call.
 * Failures: TTS_ERR_INVALID_ARGUMENT (NULL encoder or samples, count <= 0, a sample that is NaN or
 * infinite, all samples 0 (a silent waveform has no speaker), out NULL or capacity < len: call
 * again with a larger buffer), TTS_ERR_CONTRACT (the result is not a 1-D floating tensor, or is
 * empty), TTS_ERR_SHAPE (the method raised an error about shapes/sizes), TTS_ERR_OUT_OF_MEMORY,
 * TTS_ERR_INTERNAL (the method raised anything else: the message says what).
 */
TTS_SHIM_API tts_status tts_shim_embed_waveform(tts_encoder *e, const float *samples, int64_t count, float *out,
                                                int64_t capacity, int64_t *out_len);

/* ---- data-parallel groups (ABI 5) ------------------------------------------------------- */

/*
 * A c10d process group of world_size ranks, one per process (gloo: collectives over TCP, for CPU
 * and CUDA tensors). Rank 0 serves the rendezvous store on master_port (every address); every rank
 * connects to master_addr:master_port, then the group connects its ranks to one another over the
 * interface that holds local_addr (this rank's address as the other ranks reach it; NULL or "":
 * master_addr for rank 0, else the host's default). Blocks until all world_size ranks joined.
 * timeout_seconds (> 0) bounds the rendezvous and every later collective: a peer that hangs fails
 * the step with TTS_ERR_PEER after it (a peer that dies fails it at once).
 * Failures: TTS_ERR_INVALID_ARGUMENT (NULL address or out, port outside 1..65535, rank outside
 * 0..world_size-1, world_size < 1, timeout <= 0), TTS_ERR_PEER (the rendezvous or the group's
 * connections failed or timed out: the message says which). *out is NULL on error.
 */
typedef struct tts_group tts_group;
TTS_SHIM_API tts_status tts_shim_group_join(const char *master_addr, int32_t master_port, const char *local_addr,
                                            int32_t rank, int32_t world_size, double timeout_seconds,
                                            tts_group **out);

/* Free a group (NULL is fine). A model that joined it keeps the group alive until it is freed. */
TTS_SHIM_API void tts_shim_group_free(tts_group *g);

/*
 * The model trains data-parallel in the group from now on (every rank calls it, after loading the
 * same checkpoint if any): rank 0's parameters and buffers are broadcast to every rank, then each
 * tts_shim_train_step
 *  - runs its micro-batches locally (forward, backward of loss / count), then
 *  - exchanges every rank's outcome: if any rank's micro-batches failed, no rank updates; the rank
 *    that failed returns its own error, the others TTS_ERR_OUT_OF_MEMORY when a peer ran out of
 *    memory (the gang retries smaller together) and TTS_ERR_PEER otherwise;
 *  - averages the gradients over the ranks (sum / world_size), and the metrics too (each metric is
 *    the mean over every rank's micro-batches), so every rank takes the same AdamW step with the
 *    same grad norm and clipping: one step of world_size x count micro-batches.
 * Eval steps and checkpoints stay local (rank 0 writes the run's checkpoints).
 * Failures: TTS_ERR_INVALID_ARGUMENT (NULL, or the model is already in a group), TTS_ERR_PEER.
 */
TTS_SHIM_API tts_status tts_shim_model_join_group(tts_model *m, tts_group *g);

#ifdef __cplusplus
}
#endif

#endif /* TTS_TORCH_SHIM_H */
