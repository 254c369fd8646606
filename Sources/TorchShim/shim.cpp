// shim.cpp - libtorch implementation of the plain-C ABI in include/tts_torch_shim.h.
//
// C++17 over libtorch (tested with Debian's 1.13.1 CPU build; written to also compile against the
// CUDA libtorch 2.x of the PyTorch distribution, CUDA-only code behind TTS_SHIM_WITH_CUDA).
// Every exported function catches every exception: nothing C++ crosses the C boundary.

#define TTS_SHIM_BUILDING 1
#include "tts_torch_shim.h"

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef TTS_SHIM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

// ---- errors ------------------------------------------------------------------------------

thread_local std::string g_last_error;

struct ShimError {
  tts_status status;
  std::string message;
};

[[noreturn]] void fail(tts_status status, std::string message) {
  throw ShimError{status, std::move(message)};
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool mentions_oom(const std::string& msg) {
  const std::string l = lower(msg);
  return l.find("out of memory") != std::string::npos;
}

// Errors raised inside forward: the kind of failure is read from torch's message.
bool mentions_shape(const std::string& msg) {
  const std::string l = lower(msg);
  static const char* keys[] = {"shape", "size", "dimension", "dim ", "index out of range",
                               "expected scalar type", "dtype", "must match", "out of bounds"};
  for (const char* k : keys)
    if (l.find(k) != std::string::npos) return true;
  return false;
}

// The last non-empty line of a TorchScript error ("RuntimeError: ...") comes first in our
// message, followed by the whole of torch's message (interpreter traceback included).
std::string summarize(const std::string& msg) {
  std::vector<std::string> lines;
  std::istringstream in(msg);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  if (lines.size() <= 1) return msg;
  std::string last = lines.back();
  // c10::Error messages end with "Exception raised from ..." only with backtraces; skip those.
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (it->find("Exception raised from") == std::string::npos && it->rfind("frame #", 0) != 0) {
      last = *it;
      break;
    }
  }
  size_t start = last.find_first_not_of(" \t");
  return last.substr(start == std::string::npos ? 0 : start) + "\n" + msg;
}

const char* what_of(const c10::Error& e) { return e.what_without_backtrace(); }

#ifdef TTS_SHIM_WITH_CUDA
void release_cuda_cache() noexcept {
  try {
    c10::cuda::CUDACachingAllocator::emptyCache();
  } catch (...) {
  }
}
#else
void release_cuda_cache() noexcept {}
#endif

template <class F>
tts_status guarded(F&& body) {
  g_last_error.clear();
  try {
    body();
    return TTS_OK;
  } catch (const ShimError& e) {
    g_last_error = e.message;
    return e.status;
  } catch (const c10::OutOfMemoryError& e) {
    g_last_error = std::string("out of memory: ") + what_of(e);
    release_cuda_cache();
    return TTS_ERR_OUT_OF_MEMORY;
  } catch (const c10::Error& e) {
    g_last_error = what_of(e);
    if (mentions_oom(g_last_error)) {
      release_cuda_cache();
      return TTS_ERR_OUT_OF_MEMORY;
    }
    return TTS_ERR_INTERNAL;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory (std::bad_alloc)";
    return TTS_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return TTS_ERR_INTERNAL;
  } catch (...) {
    g_last_error = "unknown C++ exception";
    return TTS_ERR_INTERNAL;
  }
}

// ---- config ------------------------------------------------------------------------------

void validate_config(const tts_train_config& c) {
  auto bad = [](const std::string& what) { fail(TTS_ERR_INVALID_ARGUMENT, "invalid config: " + what); };
  if (!(std::isfinite(c.lr) && c.lr >= 0)) bad("lr must be finite and >= 0");
  if (!(c.beta1 >= 0 && c.beta1 < 1)) bad("beta1 must be in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) bad("beta2 must be in [0, 1)");
  if (!(std::isfinite(c.eps) && c.eps >= 0)) bad("eps must be finite and >= 0");
  if (!(std::isfinite(c.weight_decay) && c.weight_decay >= 0)) bad("weight_decay must be finite and >= 0");
  if (std::isnan(c.grad_clip)) bad("grad_clip is NaN");
  if (c.schedule < 0 || c.schedule > 3) bad("schedule must be 0 (constant), 1 (linear), 2 (cosine) or 3 (wsd)");
  if (c.warmup_steps < 0) bad("warmup_steps must be >= 0");
  if (c.schedule != TTS_SCHEDULE_CONSTANT && c.total_steps <= c.warmup_steps)
    bad("total_steps must be > warmup_steps for the linear, cosine and wsd schedules");
  if (!(c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1)) bad("min_lr_ratio must be in [0, 1]");
  if (!(c.decay_fraction >= 0 && c.decay_fraction <= 1)) bad("decay_fraction must be in [0, 1]");
  if (c.device < -1) bad("device must be -1 (cpu) or a CUDA index >= 0");
  if (c.amp != 0 && c.amp != 1) bad("amp must be 0 or 1");
  if (c.threads < 0) bad("threads must be >= 0");
  if (c.oom_at_batch < 0) bad("oom_at_batch must be >= 0");
  if (c.jit_optimize != 0 && c.jit_optimize != 1) bad("jit_optimize must be 0 or 1");
}

constexpr double kPi = 3.14159265358979323846;

double lr_at(const tts_train_config& c, int64_t step) {
  if (c.schedule < TTS_SCHEDULE_CONSTANT || c.schedule > TTS_SCHEDULE_WSD) return std::numeric_limits<double>::quiet_NaN();
  if (step < 0) return 0.0;
  const double lr = c.lr;
  const int64_t W = c.warmup_steps;
  if (W > 0 && step < W) return lr * static_cast<double>(step + 1) / static_cast<double>(W);
  const double m = c.min_lr_ratio * lr;
  const int64_t S = c.total_steps;
  switch (c.schedule) {
    case TTS_SCHEDULE_CONSTANT:
      return lr;
    case TTS_SCHEDULE_LINEAR:
    case TTS_SCHEDULE_COSINE: {
      double p = static_cast<double>(step - W) / static_cast<double>(std::max<int64_t>(1, S - W));
      p = std::min(1.0, std::max(0.0, p));
      if (c.schedule == TTS_SCHEDULE_LINEAR) return m + (lr - m) * (1.0 - p);
      return m + (lr - m) * 0.5 * (1.0 + std::cos(kPi * p));
    }
    case TTS_SCHEDULE_WSD: {
      int64_t D = static_cast<int64_t>(std::llround(c.decay_fraction * static_cast<double>(S)));
      D = std::max<int64_t>(0, std::min<int64_t>(D, S - W));
      const int64_t D0 = S - D;
      if (step < D0) return lr;
      double p = static_cast<double>(step - D0) / static_cast<double>(std::max<int64_t>(1, D));
      p = std::min(1.0, std::max(0.0, p));
      return lr - (lr - m) * p;
    }
    default:
      return std::numeric_limits<double>::quiet_NaN();
  }
}

// ---- devices -----------------------------------------------------------------------------

void cpu_meminfo(int64_t* total, int64_t* avail) {
  *total = 0;
  *avail = 0;
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemTotal:") *total = kb * 1024;
    if (key == "MemAvailable:") *avail = kb * 1024;
  }
}

// glibc malloc tuning for CPU training (process-wide, once). A training step allocates and frees
// the same large activation buffers every step; with glibc's defaults many of them are mmap'ed
// and munmap'ed (or the heap top trimmed) each time, and the resulting page faults cost 10-30% of
// a CPU step here. Large blocks are kept in the heap instead: memory stays at the peak of a step,
// which a trainer reaches every step anyway. TTS_SHIM_MALLOC_TUNING=0 in the environment skips it.
void tune_malloc() noexcept {
  const char* env = std::getenv("TTS_SHIM_MALLOC_TUNING");
  if (env && std::strcmp(env, "0") == 0) return;
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);   // the largest value glibc accepts on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);  // keep up to 1 GiB of free heap top
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);           // grow the heap in 64 MiB steps
}

void tune_malloc_once() noexcept {
  static std::once_flag once;
  try {
    std::call_once(once, tune_malloc);
  } catch (...) {
  }
}

int32_t cuda_count() noexcept {
  try {
    return static_cast<int32_t>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

}  // namespace

// ---- the model ---------------------------------------------------------------------------

struct tts_model {
  torch::jit::Module module;
  tts_train_config config{};
  torch::Device device{torch::kCPU};
  std::vector<torch::Tensor> params;  // the optimizer's parameters (requires_grad)
  std::vector<std::string> param_names;
  std::vector<torch::Tensor> all_params;  // every parameter, in named_parameters order
  std::vector<std::string> buffer_names;
  std::vector<torch::Tensor> buffers;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  int64_t step = 0;
  int64_t parameter_count = 0;
  std::vector<std::string> arg_names;  // forward's arguments after self
  size_t required_args = 0;
  // ABI 5: the data-parallel group the model trains in (undefined: alone).
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  int32_t group_size = 1;
};

struct tts_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  int32_t rank = 0;
  int32_t size = 1;
};

namespace {

std::unique_ptr<torch::optim::AdamW> make_optimizer(const tts_model& m) {
  torch::optim::AdamWOptions o(m.config.lr);
  o.betas(std::make_tuple(m.config.beta1, m.config.beta2));
  o.eps(m.config.eps);
  o.weight_decay(m.config.weight_decay);
  o.amsgrad(false);
  return std::make_unique<torch::optim::AdamW>(m.params, o);
}

void clear_grads(tts_model& m) noexcept {
  for (auto& p : m.params) {
    try {
      if (p.grad().defined()) p.mutable_grad().reset();
    } catch (...) {
    }
  }
}

// Checks the forward schema: Tensor arguments, Dict[str, Tensor] result.
void check_forward_schema(tts_model& m) {
  auto method = m.module.find_method("forward");
  if (!method) fail(TTS_ERR_CONTRACT, "the module has no forward method (the contract needs forward(batch...) -> Dict[str, Tensor])");
  const c10::FunctionSchema& schema = method->function().getSchema();
  const auto& args = schema.arguments();
  m.arg_names.clear();
  m.required_args = 0;
  for (size_t i = 1; i < args.size(); ++i) {  // 0 is self
    const auto& a = args[i];
    m.arg_names.push_back(a.name());
    const bool has_default = a.default_value().has_value();
    if (!has_default) {
      if (a.type()->kind() != c10::TypeKind::TensorType)
        fail(TTS_ERR_CONTRACT, "forward argument '" + a.name() + "' has type " + a.type()->str() +
                                   "; the contract passes only Tensor arguments");
      m.required_args = i;
    }
  }
  const auto& rets = schema.returns();
  bool ok = rets.size() == 1;
  if (ok) {
    auto dict = rets[0].type()->cast<c10::DictType>();
    ok = dict && dict->getKeyType()->kind() == c10::TypeKind::StringType &&
         dict->getValueType()->kind() == c10::TypeKind::TensorType;
  }
  if (!ok) {
    std::string got = rets.size() == 1 ? rets[0].type()->str() : std::to_string(rets.size()) + " values";
    fail(TTS_ERR_CONTRACT, "forward must return Dict[str, Tensor] (with 'loss'), but it returns " + got);
  }
}

c10::ScalarType scalar_type_of(int32_t dtype) {
  switch (dtype) {
    case TTS_DTYPE_INT64: return torch::kInt64;
    case TTS_DTYPE_INT32: return torch::kInt32;
    case TTS_DTYPE_FLOAT32: return torch::kFloat32;
    default: return torch::kFloat32;  // unreachable after validation
  }
}

std::string shape_str(const tts_tensor& t) {
  std::string s = "[";
  for (int32_t d = 0; d < t.ndim; ++d) s += (d ? ", " : "") + std::to_string(t.shape[d]);
  return s + "]";
}

std::string tensor_label(int32_t batch, int32_t i, const tts_tensor& t) {
  std::string s = "micro-batch " + std::to_string(batch) + " tensor " + std::to_string(i);
  if (t.name && *t.name) s += " ('" + std::string(t.name) + "')";
  return s;
}

// Validates the layout of all micro-batches before any compute.
void validate_batches(const tts_model& m, const tts_batch* batches, int32_t count) {
  if (!batches) fail(TTS_ERR_INVALID_ARGUMENT, "micro_batches is NULL");
  if (count <= 0) fail(TTS_ERR_INVALID_ARGUMENT, "micro-batch count must be >= 1");
  for (int32_t b = 0; b < count; ++b) {
    const tts_batch& batch = batches[b];
    if (batch.count < 0 || (batch.count > 0 && !batch.tensors))
      fail(TTS_ERR_INVALID_ARGUMENT, "micro-batch " + std::to_string(b) + " has a NULL tensor array or a negative count");
    if (static_cast<size_t>(batch.count) < m.required_args || static_cast<size_t>(batch.count) > m.arg_names.size())
      fail(TTS_ERR_SHAPE, "micro-batch " + std::to_string(b) + " has " + std::to_string(batch.count) +
                              " tensors but forward takes " +
                              (m.required_args == m.arg_names.size() ? std::to_string(m.required_args)
                                                                     : std::to_string(m.required_args) + ".." + std::to_string(m.arg_names.size())));
    if (b > 0 && batch.count != batches[0].count)
      fail(TTS_ERR_SHAPE, "micro-batch " + std::to_string(b) + " has " + std::to_string(batch.count) +
                              " tensors, micro-batch 0 has " + std::to_string(batches[0].count));
    for (int32_t i = 0; i < batch.count; ++i) {
      const tts_tensor& t = batch.tensors[i];
      const std::string label = tensor_label(b, i, t);
      if (t.dtype < 0 || t.dtype > 2)
        fail(TTS_ERR_SHAPE, label + ": dtype " + std::to_string(t.dtype) + " is not 0 (int64), 1 (int32) or 2 (float32)");
      if (t.ndim < 0 || t.ndim > 8) fail(TTS_ERR_SHAPE, label + ": ndim " + std::to_string(t.ndim) + " is not in 0..8");
      if (t.ndim > 0 && !t.shape) fail(TTS_ERR_SHAPE, label + ": shape is NULL");
      int64_t numel = 1;
      for (int32_t d = 0; d < t.ndim; ++d) {
        if (t.shape[d] < 0) fail(TTS_ERR_SHAPE, label + ": negative size in shape " + shape_str(t));
        if (t.shape[d] > 0 && numel > (int64_t(1) << 40) / t.shape[d])
          fail(TTS_ERR_SHAPE, label + ": shape " + shape_str(t) + " is too large");
        numel *= t.shape[d];
      }
      if (numel > 0 && !t.data) fail(TTS_ERR_SHAPE, label + ": data is NULL for shape " + shape_str(t));
      if (t.name && *t.name && m.arg_names[i] != t.name)
        fail(TTS_ERR_SHAPE, label + " is named '" + t.name + "' but forward's argument " + std::to_string(i) +
                                " is '" + m.arg_names[i] + "'");
      if (b > 0) {
        const tts_tensor& f = batches[0].tensors[i];
        if (f.dtype != t.dtype || f.ndim != t.ndim)
          fail(TTS_ERR_SHAPE, label + ": dtype/ndim (" + std::to_string(t.dtype) + ", " + std::to_string(t.ndim) +
                                  ") differ from micro-batch 0's (" + std::to_string(f.dtype) + ", " + std::to_string(f.ndim) + ")");
      }
    }
  }
}

std::vector<c10::IValue> make_inputs(const tts_model& m, const tts_batch& batch) {
  std::vector<c10::IValue> inputs;
  inputs.reserve(batch.count);
  for (int32_t i = 0; i < batch.count; ++i) {
    const tts_tensor& t = batch.tensors[i];
    std::vector<int64_t> sizes(t.shape, t.shape + t.ndim);
    auto opts = torch::TensorOptions().dtype(scalar_type_of(t.dtype));
    int64_t numel = 1;
    for (int64_t s : sizes) numel *= s;
    torch::Tensor host = numel == 0 ? torch::empty(sizes, opts)
                                    : torch::from_blob(const_cast<void*>(t.data), sizes, opts);
    inputs.emplace_back(m.device.is_cpu() ? host.clone() : host.to(m.device, /*non_blocking=*/false, /*copy=*/true));
  }
  return inputs;
}

int64_t first_dim(const tts_batch& batch) {
  if (batch.count < 1 || batch.tensors[0].ndim < 1) return 0;
  return batch.tensors[0].shape[0];
}

void oom_stand_in(const tts_model& m, const tts_batch& batch, int32_t index) {
  const int64_t n = first_dim(batch);
  if (m.config.oom_at_batch > 0 && n >= m.config.oom_at_batch)
    fail(TTS_ERR_OUT_OF_MEMORY, "CUDA out of memory (oom_at_batch stand-in): micro-batch " + std::to_string(index) +
                                    " has first dimension " + std::to_string(n) + " >= oom_at_batch " +
                                    std::to_string(m.config.oom_at_batch));
}

// bf16 autocast around forward, on CUDA only (amp = 1). RAII so exceptions restore state.
// libtorch 2.4 replaced the CUDA-specific calls (is_enabled, set_autocast_gpu_dtype, ...) with
// per-device-type ones and deprecated the old names; both spellings are covered.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define TTS_AUTOCAST_PER_DEVICE 1
#endif
struct AutocastScope {
  bool active = false;
  bool prev_enabled = false;
  at::ScalarType prev_dtype = at::kHalf;
  explicit AutocastScope(bool on) : active(on) {
    if (!active) return;
#ifdef TTS_AUTOCAST_PER_DEVICE
    prev_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
    prev_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    prev_enabled = at::autocast::is_enabled();
    prev_dtype = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!active) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef TTS_AUTOCAST_PER_DEVICE
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype);
#else
    at::autocast::set_enabled(prev_enabled);
    at::autocast::set_autocast_gpu_dtype(prev_dtype);
#endif
  }
};

// Runs forward and turns its failures into shim statuses.
c10::Dict<c10::IValue, c10::IValue> run_forward(tts_model& m, std::vector<c10::IValue> inputs) {
  c10::IValue out;
  try {
    AutocastScope autocast(m.config.amp == 1 && m.device.is_cuda());
    out = m.module.forward(std::move(inputs));
  } catch (const ShimError&) {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    fail(TTS_ERR_OUT_OF_MEMORY, std::string("out of memory in forward: ") + what_of(e));
  } catch (const std::exception& e) {
    const c10::Error* ce = dynamic_cast<const c10::Error*>(&e);
    const std::string msg = ce ? what_of(*ce) : e.what();
    if (mentions_oom(msg)) fail(TTS_ERR_OUT_OF_MEMORY, "out of memory in forward: " + summarize(msg));
    if (mentions_shape(msg)) fail(TTS_ERR_SHAPE, "forward rejected the batch: " + summarize(msg));
    fail(TTS_ERR_INTERNAL, "forward failed: " + summarize(msg));
  }
  if (!out.isGenericDict()) fail(TTS_ERR_CONTRACT, "forward returned " + out.tagKind() + ", not Dict[str, Tensor]");
  return out.toGenericDict();
}

struct MetricSums {
  std::vector<std::string> names;
  std::vector<double> sums;
  std::vector<int32_t> counts;
  void add(const std::string& name, double v) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) {
        sums[i] += v;
        counts[i] += 1;
        return;
      }
    }
    if (names.size() >= 32) fail(TTS_ERR_CONTRACT, "forward returned more than 32 entries (the result holds 32 metrics)");
    names.push_back(name);
    sums.push_back(v);
    counts.push_back(1);
  }
};

double scalar_value(const torch::Tensor& t) {
  torch::Tensor v = t.detach();
  if (v.numel() != 1) v = v.to(torch::kDouble).mean();
  return v.item<double>();
}

// Reads loss and metrics from forward's dict; returns the loss tensor.
torch::Tensor collect(const c10::Dict<c10::IValue, c10::IValue>& dict, MetricSums& sums, bool need_grad) {
  torch::Tensor loss;
  bool found = false;
  std::vector<std::string> keys;
  for (const auto& e : dict) {
    if (!e.key().isString() || !e.value().isTensor())
      fail(TTS_ERR_CONTRACT, "forward's result must map strings to tensors");
    keys.push_back(e.key().toStringRef());
    if (keys.back() == "loss") {
      loss = e.value().toTensor();
      found = true;
    }
  }
  if (!found) {
    std::string list;
    for (const auto& k : keys) list += (list.empty() ? "" : ", ") + ("'" + k + "'");
    fail(TTS_ERR_CONTRACT, "forward's result has no 'loss' entry (it has: " + (list.empty() ? std::string("nothing") : list) + ")");
  }
  if (!loss.defined() || loss.numel() != 1)
    fail(TTS_ERR_CONTRACT, "'loss' must be a scalar tensor, got shape " +
                               (loss.defined() ? c10::str(loss.sizes()) : std::string("undefined")));
  if (!loss.is_floating_point()) fail(TTS_ERR_CONTRACT, "'loss' must be a floating-point tensor");
  if (need_grad && !loss.requires_grad())
    fail(TTS_ERR_CONTRACT, "'loss' does not require grad (no trainable parameter reaches it)");
  sums.add("loss", scalar_value(loss));
  for (const auto& e : dict) {
    const std::string& k = e.key().toStringRef();
    if (k == "loss") continue;
    if (k.size() >= sizeof(((tts_metric*)nullptr)->name))
      fail(TTS_ERR_CONTRACT, "metric name '" + k + "' is longer than 63 bytes");
    sums.add(k, scalar_value(e.value().toTensor()));
  }
  return loss;
}

void fill_metrics(const MetricSums& sums, tts_step_result* out) {
  out->metric_count = static_cast<int32_t>(sums.names.size());
  for (size_t i = 0; i < sums.names.size(); ++i) {
    std::memset(out->metrics[i].name, 0, sizeof(out->metrics[i].name));
    std::memcpy(out->metrics[i].name, sums.names[i].data(), sums.names[i].size());
    out->metrics[i].value = sums.sums[i] / sums.counts[i];
  }
}

// Total L2 norm of the gradients, computed as torch.nn.utils.clip_grad_norm_ does.
torch::Tensor grad_norm_tensor(const tts_model& m, std::vector<torch::Tensor>& grads) {
  grads.clear();
  for (const auto& p : m.params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::Tensor();
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.detach().norm(2));
  return torch::stack(norms).norm(2);
}

// ---- data-parallel collectives (ABI 5) -----------------------------------------------------

// Runs one collective and waits for it; any failure (a peer gone, a timeout) is TTS_ERR_PEER.
template <class F>
void collective(const char* what, F&& start) {
  try {
    auto work = start();
    work->wait();
  } catch (const ShimError&) {
    throw;
  } catch (const c10::Error& e) {
    fail(TTS_ERR_PEER, std::string(what) + " with the other ranks failed: " + what_of(e));
  } catch (const std::exception& e) {
    fail(TTS_ERR_PEER, std::string(what) + " with the other ranks failed: " + e.what());
  }
}

void all_reduce(tts_model& m, torch::Tensor& t, c10d::ReduceOp op, const char* what) {
  std::vector<torch::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = op;
  collective(what, [&] { return m.group->allreduce(v, o); });
}

// Averages every trainable parameter's gradient over the group, one flat buffer per dtype and
// device (a parameter no micro-batch reached gets a zero gradient, as on the ranks it did reach).
void average_gradients(tts_model& m) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(m.params.size());
  for (auto& p : m.params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  std::vector<bool> done(grads.size(), false);
  for (size_t i = 0; i < grads.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> members;
    for (size_t j = i; j < grads.size(); ++j)
      if (!done[j] && grads[j].scalar_type() == grads[i].scalar_type() && grads[j].device() == grads[i].device()) {
        members.push_back(j);
        done[j] = true;
      }
    std::vector<torch::Tensor> flat;
    flat.reserve(members.size());
    for (size_t j : members) flat.push_back(grads[j].reshape({-1}));
    torch::Tensor buffer = torch::cat(flat);
    all_reduce(m, buffer, c10d::ReduceOp::SUM, "averaging the gradients");
    buffer.div_(static_cast<double>(m.group_size));
    int64_t offset = 0;
    for (size_t j : members) {
      const int64_t n = grads[j].numel();
      grads[j].copy_(buffer.narrow(0, offset, n).view_as(grads[j]));
      offset += n;
    }
  }
}

// Sums every rank's metric sums and counts: each metric becomes the mean over all micro-batches.
void reduce_metrics(tts_model& m, MetricSums& sums) {
  const size_t n = sums.names.size();
  torch::Tensor t = torch::empty({static_cast<int64_t>(2 * n)}, torch::kDouble);
  auto a = t.accessor<double, 1>();
  for (size_t i = 0; i < n; ++i) {
    a[i] = sums.sums[i];
    a[n + i] = sums.counts[i];
  }
  all_reduce(m, t, c10d::ReduceOp::SUM, "averaging the metrics");
  a = t.accessor<double, 1>();
  for (size_t i = 0; i < n; ++i) {
    sums.sums[i] = a[i];
    sums.counts[i] = static_cast<int32_t>(std::llround(a[n + i]));
  }
}

// ---- checkpoint files --------------------------------------------------------------------

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail(TTS_ERR_IO, "cannot open " + path + " for fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && !directory) fail(TTS_ERR_IO, "fsync " + path + ": " + std::strerror(err));
}

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

struct LoadedCheckpoint {
  int64_t step = 0;
  std::string extra;
  std::vector<torch::Tensor> params;
  std::vector<torch::Tensor> buffers;
  torch::serialize::InputArchive optimizer;
  torch::Tensor rng_cpu;
  torch::Tensor rng_cuda;
};

c10::IValue read_value(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v)) fail(TTS_ERR_IO, "checkpoint " + path + " has no '" + key + "' (not a tts-shim checkpoint?)");
  return v;
}

std::vector<std::string> read_names(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v = read_value(ar, key, path);
  std::vector<std::string> names;
  for (const auto& s : v.toListRef()) names.push_back(s.toStringRef());
  return names;
}

void open_checkpoint(const std::string& path, torch::serialize::InputArchive& ar, const torch::Device& device) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(TTS_ERR_IO, "cannot read checkpoint " + path + ": " + std::strerror(errno));
  try {
    ar.load_from(path, device);
  } catch (const c10::Error& e) {
    fail(TTS_ERR_IO, "cannot read checkpoint " + path + ": " + what_of(e));
  }
  c10::IValue format = read_value(ar, "tts_shim_format", path);
  if (!format.isInt() || format.toInt() != 1)
    fail(TTS_ERR_IO, "checkpoint " + path + " has an unknown tts_shim_format");
}

void copy_extra(const std::string& extra, char* out, int64_t capacity, int64_t* length) {
  if (length) *length = static_cast<int64_t>(extra.size());
  if (!out) return;
  if (capacity < static_cast<int64_t>(extra.size()) + 1)
    fail(TTS_ERR_INVALID_ARGUMENT, "extra_json buffer too small: need " + std::to_string(extra.size() + 1) +
                                       " bytes, capacity is " + std::to_string(capacity));
  std::memcpy(out, extra.data(), extra.size());
  out[extra.size()] = '\0';
}

}  // namespace

// ---- exported functions ------------------------------------------------------------------

extern "C" {

TTS_SHIM_API int tts_shim_abi_version(void) { return TTS_SHIM_ABI_VERSION; }

TTS_SHIM_API const char* tts_shim_last_error(void) { return g_last_error.c_str(); }

TTS_SHIM_API int32_t tts_shim_cuda_device_count(void) { return cuda_count(); }

TTS_SHIM_API int32_t tts_shim_built_with_cuda(void) {
#ifdef TTS_SHIM_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

TTS_SHIM_API tts_status tts_shim_device_info(int32_t index, tts_device_info* out) {
  return guarded([&] {
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    tts_device_info info;
    std::memset(&info, 0, sizeof(info));
    if (index == -1) {
      std::snprintf(info.name, sizeof(info.name), "cpu");
      cpu_meminfo(&info.total_bytes, &info.free_bytes);
      info.allocated_bytes = 0;
      info.is_cuda = 0;
      *out = info;
      return;
    }
    const int32_t n = cuda_count();
    if (index < -1 || index >= n)
      fail(TTS_ERR_INVALID_ARGUMENT, "device index " + std::to_string(index) + " out of range (-1 = cpu, " +
                                         std::to_string(n) + " CUDA devices)");
#ifdef TTS_SHIM_WITH_CUDA
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
    const cudaDeviceProp* prop = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index));
    std::snprintf(info.name, sizeof(info.name), "%s", prop ? prop->name : "cuda");
    size_t free_b = 0, total_b = 0;
    cudaError_t rc = cudaMemGetInfo(&free_b, &total_b);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      fail(TTS_ERR_INTERNAL, std::string("cudaMemGetInfo failed: ") + cudaGetErrorString(rc));
    }
    info.total_bytes = static_cast<int64_t>(total_b);
    info.free_bytes = static_cast<int64_t>(free_b);
    // allocated_bytes[0] is StatType::AGGREGATE in every libtorch version (1.13 .. 2.x), where
    // the enum's namespace moved; index 0 avoids naming it.
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
    info.allocated_bytes = static_cast<int64_t>(stats.allocated_bytes[0].current);
    info.is_cuda = 1;
    *out = info;
#else
    fail(TTS_ERR_INTERNAL, "built without CUDA");
#endif
  });
}

TTS_SHIM_API void tts_shim_default_config(tts_train_config* out) {
  if (!out) return;
  std::memset(out, 0, sizeof(*out));
  out->lr = 1e-4;
  out->beta1 = 0.9;
  out->beta2 = 0.999;
  out->eps = 1e-8;
  out->weight_decay = 0.01;
  out->grad_clip = 1.0;
  out->schedule = TTS_SCHEDULE_COSINE;
  out->warmup_steps = 0;
  out->total_steps = 1000;
  out->min_lr_ratio = 0.0;
  out->decay_fraction = 0.1;
  out->device = -1;
  out->amp = 0;
  out->seed = 0;
  out->threads = 0;
  out->oom_at_batch = 0;
  out->jit_optimize = 0;
}

TTS_SHIM_API double tts_shim_lr_at(const tts_train_config* c, int64_t step) {
  if (!c) return std::numeric_limits<double>::quiet_NaN();
  return lr_at(*c, step);
}

TTS_SHIM_API tts_status tts_shim_model_load(const char* torchscript_path, const tts_train_config* config, tts_model** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!torchscript_path || !*torchscript_path) fail(TTS_ERR_INVALID_ARGUMENT, "model path is NULL or empty");
    if (!config) fail(TTS_ERR_INVALID_ARGUMENT, "config is NULL");
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    validate_config(*config);
    auto m = std::make_unique<tts_model>();
    m->config = *config;
    if (config->device >= 0) {
#ifndef TTS_SHIM_WITH_CUDA
      fail(TTS_ERR_INVALID_ARGUMENT, "device cuda:" + std::to_string(config->device) +
                                         " requested, but the shim was built against a CPU-only libtorch");
#endif
      const int32_t n = cuda_count();
      if (config->device >= n)
        fail(TTS_ERR_INVALID_ARGUMENT, "device cuda:" + std::to_string(config->device) + " requested, but torch sees " +
                                           std::to_string(n) + " CUDA devices");
      m->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(config->device));
    }
    if (config->threads > 0) torch::set_num_threads(config->threads);
    if (config->device < 0) tune_malloc_once();
    torch::jit::setGraphExecutorOptimize(config->jit_optimize == 1);
    torch::manual_seed(static_cast<uint64_t>(config->seed));

    struct stat st;
    if (::stat(torchscript_path, &st) != 0)
      fail(TTS_ERR_LOAD, std::string("cannot open model ") + torchscript_path + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail(TTS_ERR_LOAD, std::string("model path ") + torchscript_path + " is a directory");
    try {
      m->module = torch::jit::load(torchscript_path, m->device);
    } catch (const c10::Error& e) {
      fail(TTS_ERR_LOAD, std::string("cannot load TorchScript module ") + torchscript_path + ": " + what_of(e));
    } catch (const std::exception& e) {
      fail(TTS_ERR_LOAD, std::string("cannot load TorchScript module ") + torchscript_path + ": " + e.what());
    }
    check_forward_schema(*m);
    m->module.train(true);
    for (const auto& np : m->module.named_parameters(/*recurse=*/true)) {
      m->all_params.push_back(np.value);
      m->parameter_count += np.value.numel();
      if (np.value.requires_grad()) {
        m->params.push_back(np.value);
        m->param_names.push_back(np.name);
      }
    }
    for (const auto& nb : m->module.named_buffers(/*recurse=*/true)) {
      m->buffer_names.push_back(nb.name);
      m->buffers.push_back(nb.value);
    }
    if (m->params.empty()) fail(TTS_ERR_CONTRACT, "the module has no trainable parameters (none requires grad)");
    m->optimizer = make_optimizer(*m);
    *out = m.release();
  });
}

TTS_SHIM_API void tts_shim_model_free(tts_model* m) {
  try {
    delete m;
  } catch (...) {
  }
}

TTS_SHIM_API int64_t tts_shim_step(const tts_model* m) { return m ? m->step : -1; }

TTS_SHIM_API int64_t tts_shim_parameter_count(const tts_model* m) { return m ? m->parameter_count : -1; }

TTS_SHIM_API int32_t tts_shim_forward_arity(const tts_model* m) {
  return m ? static_cast<int32_t>(m->arg_names.size()) : -1;
}

TTS_SHIM_API tts_status tts_shim_train_step(tts_model* m, const tts_batch* micro_batches, int32_t count, tts_step_result* out) {
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    if (!m->group) validate_batches(*m, micro_batches, count);
    c10::OptionalDeviceGuard device_guard;
    if (m->device.is_cuda()) device_guard.reset_device(m->device);
    try {
      clear_grads(*m);
      MetricSums sums;
      auto local = [&] {
        if (m->group) validate_batches(*m, micro_batches, count);
        for (int32_t b = 0; b < count; ++b) {
          oom_stand_in(*m, micro_batches[b], b);
          auto dict = run_forward(*m, make_inputs(*m, micro_batches[b]));
          torch::Tensor loss = collect(dict, sums, /*need_grad=*/true);
          (count == 1 ? loss : loss / static_cast<double>(count)).backward();
        }
      };
      if (!m->group) {
        local();
      } else {
        // Every rank learns every rank's outcome before anyone updates: a failed rank never
        // leaves the others waiting in the gradient all-reduce.
        const tts_status mine = guarded(local);
        const std::string my_error = g_last_error;
        torch::Tensor outcome = torch::tensor({static_cast<int64_t>(mine != TTS_OK), static_cast<int64_t>(mine == TTS_ERR_OUT_OF_MEMORY)}, torch::kInt64);
        all_reduce(*m, outcome, c10d::ReduceOp::MAX, "exchanging the step's outcome");
        if (mine != TTS_OK) fail(mine, my_error);
        if (outcome[0].item<int64_t>() != 0) {
          if (outcome[1].item<int64_t>() != 0)
            fail(TTS_ERR_OUT_OF_MEMORY, "out of memory on a peer rank of the data-parallel group: this step is not taken on any rank (retry the gang with smaller micro-batches)");
          fail(TTS_ERR_PEER, "a peer rank of the data-parallel group failed this step (its own error says why); no rank took it");
        }
        average_gradients(*m);
        reduce_metrics(*m, sums);
      }
      std::vector<torch::Tensor> grads;
      torch::Tensor norm_t = grad_norm_tensor(*m, grads);
      const double norm = norm_t.defined() ? norm_t.item<double>() : 0.0;
      double clipped = norm;
      const bool finite = std::isfinite(norm);
      if (finite && m->config.grad_clip > 0 && norm_t.defined()) {
        // As torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to <= 1.
        torch::Tensor coef = torch::clamp_max(m->config.grad_clip / (norm_t + 1e-6), 1.0);
        if (coef.item<double>() < 1.0) {
          for (auto& g : grads) g.mul_(coef);
          std::vector<torch::Tensor> again;
          torch::Tensor n2 = grad_norm_tensor(*m, again);
          clipped = n2.item<double>();
        }
      }
      const double lr = lr_at(m->config, m->step);
      for (auto& group : m->optimizer->param_groups())
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      if (finite) m->optimizer->step();
      clear_grads(*m);
      m->step += 1;
      tts_step_result r;
      std::memset(&r, 0, sizeof(r));
      r.step = m->step;
      r.lr = lr;
      r.grad_norm = norm;
      r.grad_norm_clipped = finite ? clipped : norm;
      r.skipped = finite ? 0 : 1;
      fill_metrics(sums, &r);
      *out = r;
    } catch (...) {
      clear_grads(*m);
      throw;
    }
  });
}

TTS_SHIM_API tts_status tts_shim_eval_step(tts_model* m, const tts_batch* batch, tts_step_result* out) {
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    validate_batches(*m, batch, 1);
    c10::OptionalDeviceGuard device_guard;
    if (m->device.is_cuda()) device_guard.reset_device(m->device);
    struct TrainModeRestore {
      torch::jit::Module& module;
      ~TrainModeRestore() {
        try {
          module.train(true);
        } catch (...) {
        }
      }
    } restore{m->module};
    m->module.eval();
    torch::NoGradGuard no_grad;
    oom_stand_in(*m, *batch, 0);
    MetricSums sums;
    auto dict = run_forward(*m, make_inputs(*m, *batch));
    collect(dict, sums, /*need_grad=*/false);
    tts_step_result r;
    std::memset(&r, 0, sizeof(r));
    r.step = m->step;
    r.lr = lr_at(m->config, m->step);
    fill_metrics(sums, &r);
    *out = r;
  });
}

TTS_SHIM_API tts_status tts_shim_save_checkpoint(tts_model* m, const char* path, const char* extra_json) {
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!path || !*path) fail(TTS_ERR_INVALID_ARGUMENT, "checkpoint path is NULL or empty");
    const std::string final_path(path);
    const std::string tmp = final_path + ".tmp";
    torch::NoGradGuard no_grad;
    try {
      torch::serialize::OutputArchive ar;
      ar.write("tts_shim_format", c10::IValue(static_cast<int64_t>(1)));
      ar.write("tts_shim_abi", c10::IValue(static_cast<int64_t>(TTS_SHIM_ABI_VERSION)));
      ar.write("step", c10::IValue(m->step));
      ar.write("extra_json", c10::IValue(std::string(extra_json ? extra_json : "")));
      c10::List<std::string> pnames, bnames;
      std::vector<std::string> all_names;
      for (const auto& np : m->module.named_parameters(true)) all_names.push_back(np.name);
      for (const auto& n : all_names) pnames.push_back(n);
      for (size_t i = 0; i < m->all_params.size(); ++i)
        ar.write("p_" + std::to_string(i), m->all_params[i].detach(), /*is_buffer=*/true);
      for (const auto& n : m->buffer_names) bnames.push_back(n);
      for (size_t i = 0; i < m->buffers.size(); ++i) ar.write("b_" + std::to_string(i), m->buffers[i].detach(), true);
      ar.write("param_names", c10::IValue(pnames));
      ar.write("buffer_names", c10::IValue(bnames));
      torch::serialize::OutputArchive opt;
      m->optimizer->save(opt);
      ar.write("optimizer", opt);
      {
        at::Generator gen = at::globalContext().defaultGenerator(torch::kCPU);
        std::lock_guard<std::mutex> lock(gen.mutex());
        ar.write("rng_cpu", gen.get_state(), true);
      }
      if (m->device.is_cuda()) {
        at::Generator gen = at::globalContext().defaultGenerator(m->device);
        std::lock_guard<std::mutex> lock(gen.mutex());
        ar.write("rng_cuda", gen.get_state(), true);
      }
      ar.save_to(tmp);
      fsync_path(tmp, false);
      if (::rename(tmp.c_str(), final_path.c_str()) != 0)
        fail(TTS_ERR_IO, "rename " + tmp + " -> " + final_path + ": " + std::strerror(errno));
      fsync_path(dir_of(final_path), true);
    } catch (const ShimError&) {
      ::unlink(tmp.c_str());
      throw;
    } catch (const std::exception& e) {
      ::unlink(tmp.c_str());
      const c10::Error* ce = dynamic_cast<const c10::Error*>(&e);
      fail(TTS_ERR_IO, "cannot write checkpoint " + tmp + ": " + (ce ? what_of(*ce) : e.what()));
    }
  });
}

TTS_SHIM_API tts_status tts_shim_load_checkpoint(tts_model* m, const char* path, char* extra_json_out, int64_t capacity,
                                                 int64_t* extra_length) {
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!path || !*path) fail(TTS_ERR_INVALID_ARGUMENT, "checkpoint path is NULL or empty");
    const std::string p(path);
    torch::serialize::InputArchive ar;
    open_checkpoint(p, ar, m->device);
    LoadedCheckpoint ck;
    try {
      ck.step = read_value(ar, "step", p).toInt();
      ck.extra = read_value(ar, "extra_json", p).toStringRef();
      // Everything is read and checked before anything is applied.
      std::vector<std::string> pnames = read_names(ar, "param_names", p);
      std::vector<std::string> model_pnames;
      for (const auto& np : m->module.named_parameters(true)) model_pnames.push_back(np.name);
      if (pnames != model_pnames)
        fail(TTS_ERR_IO, "checkpoint " + p + " has " + std::to_string(pnames.size()) +
                             " parameters whose names differ from the model's " + std::to_string(model_pnames.size()) +
                             " (a checkpoint of another model?)");
      std::vector<std::string> bnames = read_names(ar, "buffer_names", p);
      if (bnames != m->buffer_names) fail(TTS_ERR_IO, "checkpoint " + p + " has buffers that differ from the model's");
      auto read_tensors = [&](const char* prefix, const std::vector<std::string>& names,
                              const std::vector<torch::Tensor>& current, std::vector<torch::Tensor>& into) {
        for (size_t i = 0; i < names.size(); ++i) {
          torch::Tensor t;
          const std::string key = prefix + std::to_string(i);
          if (!ar.try_read(key, t, /*is_buffer=*/true)) fail(TTS_ERR_IO, "checkpoint " + p + " lacks tensor " + key + " (" + names[i] + ")");
          if (t.sizes() != current[i].sizes() || t.scalar_type() != current[i].scalar_type())
            fail(TTS_ERR_IO, "checkpoint " + p + ": '" + names[i] + "' is " + c10::str(t.sizes()) + " " +
                                 c10::toString(t.scalar_type()) + ", the model's is " + c10::str(current[i].sizes()) +
                                 " " + c10::toString(current[i].scalar_type()));
          into.push_back(t);
        }
      };
      read_tensors("p_", pnames, m->all_params, ck.params);
      read_tensors("b_", bnames, m->buffers, ck.buffers);
      if (!ar.try_read("optimizer", ck.optimizer)) fail(TTS_ERR_IO, "checkpoint " + p + " has no optimizer state");
      if (!ar.try_read("rng_cpu", ck.rng_cpu, true)) fail(TTS_ERR_IO, "checkpoint " + p + " has no rng_cpu state");
      if (m->device.is_cuda()) ar.try_read("rng_cuda", ck.rng_cuda, true);
    } catch (const ShimError&) {
      throw;
    } catch (const std::exception& e) {
      const c10::Error* ce = dynamic_cast<const c10::Error*>(&e);
      fail(TTS_ERR_IO, "cannot read checkpoint " + p + ": " + (ce ? what_of(*ce) : e.what()));
    }
    // The optimizer state goes into a fresh AdamW over the same parameters; swapped in on success.
    auto optimizer = make_optimizer(*m);
    try {
      optimizer->load(ck.optimizer);
    } catch (const std::exception& e) {
      const c10::Error* ce = dynamic_cast<const c10::Error*>(&e);
      fail(TTS_ERR_IO, "checkpoint " + p + ": optimizer state does not fit: " + (ce ? what_of(*ce) : e.what()));
    }
    copy_extra(ck.extra, extra_json_out, capacity, extra_length);
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < ck.params.size(); ++i) m->all_params[i].copy_(ck.params[i]);
      for (size_t i = 0; i < ck.buffers.size(); ++i) m->buffers[i].copy_(ck.buffers[i]);
    }
    m->optimizer = std::move(optimizer);
    clear_grads(*m);
    m->step = ck.step;
    {
      at::Generator gen = at::globalContext().defaultGenerator(torch::kCPU);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(ck.rng_cpu.to(torch::kCPU));
    }
    if (m->device.is_cuda() && ck.rng_cuda.defined()) {
      at::Generator gen = at::globalContext().defaultGenerator(m->device);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(ck.rng_cuda.to(torch::kCPU));
    }
  });
}

TTS_SHIM_API tts_status tts_shim_read_checkpoint_extra(const char* path, char* extra_json_out, int64_t capacity,
                                                       int64_t* extra_length, int64_t* step_out) {
  return guarded([&] {
    if (!path || !*path) fail(TTS_ERR_INVALID_ARGUMENT, "checkpoint path is NULL or empty");
    const std::string p(path);
    torch::serialize::InputArchive ar;
    open_checkpoint(p, ar, torch::Device(torch::kCPU));
    const int64_t step = read_value(ar, "step", p).toInt();
    const std::string extra = read_value(ar, "extra_json", p).toStringRef();
    copy_extra(extra, extra_json_out, capacity, extra_length);
    if (step_out) *step_out = step;
  });
}

}  // extern "C"

// ---- synthesis (ABI 2) -------------------------------------------------------------------

TTS_SHIM_API int32_t tts_shim_has_synthesize(const tts_model* m) {
  if (!m) return -1;
  try {
    return (m->module.find_method("synthesize").has_value() && m->module.find_method("synthesis_sample_rate").has_value()) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

// How many arguments (after self) the module's synthesize takes; 0 without one.
static size_t synthesize_arity(const tts_model& m) {
  auto synth = m.module.find_method("synthesize");
  if (!synth) return 0;
  return synth->function().getSchema().arguments().size() - 1;
}

TTS_SHIM_API int32_t tts_shim_synthesize_accepts_prompt(const tts_model* m) {
  if (!m) return -1;
  try {
    return synthesize_arity(*m) >= 3 ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

TTS_SHIM_API int32_t tts_shim_synthesis_sample_rate(tts_model* m) {
  if (!m) return -1;
  try {
    auto rate_fn = m->module.find_method("synthesis_sample_rate");
    if (!rate_fn) return 0;
    c10::IValue rate = (*rate_fn)(std::vector<c10::IValue>{});
    return (rate.isInt() && rate.toInt() > 0 && rate.toInt() <= 1000000) ? static_cast<int32_t>(rate.toInt()) : 0;
  } catch (...) {
    return 0;
  }
}

TTS_SHIM_API tts_status tts_shim_synthesize(tts_model* m, const char* text, int64_t max_codes, float** samples_out,
                                            int64_t* count_out, int32_t* sample_rate_out) {
  return tts_shim_synthesize_with_prompt(m, text, max_codes, nullptr, 0, samples_out, count_out, sample_rate_out);
}

TTS_SHIM_API tts_status tts_shim_synthesize_with_prompt(tts_model* m, const char* text, int64_t max_codes,
                                                        const float* prompt, int64_t prompt_count, float** samples_out,
                                                        int64_t* count_out, int32_t* sample_rate_out) {
  if (samples_out) *samples_out = nullptr;
  if (count_out) *count_out = 0;
  if (sample_rate_out) *sample_rate_out = 0;
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!text) fail(TTS_ERR_INVALID_ARGUMENT, "text is NULL");
    if (max_codes <= 0) fail(TTS_ERR_INVALID_ARGUMENT, "max_codes must be > 0, got " + std::to_string(max_codes));
    if (!samples_out || !count_out || !sample_rate_out) fail(TTS_ERR_INVALID_ARGUMENT, "an out-parameter is NULL");
    if (prompt_count < 0) fail(TTS_ERR_INVALID_ARGUMENT, "prompt_count must be >= 0, got " + std::to_string(prompt_count));
    const bool with_prompt = prompt != nullptr && prompt_count > 0;
    if (with_prompt) {
      for (int64_t i = 0; i < prompt_count; ++i)
        if (!std::isfinite(prompt[i]))
          fail(TTS_ERR_INVALID_ARGUMENT, "prompt sample " + std::to_string(i) + " is not finite");
    }
    auto synth = m->module.find_method("synthesize");
    auto rate_fn = m->module.find_method("synthesis_sample_rate");
    if (!synth || !rate_fn)
      fail(TTS_ERR_CONTRACT, "the module exports no synthesize(text: str, max_codes: int) -> Tensor and "
                             "synthesis_sample_rate() -> int (see CONTRACT.md, Synthesis)");
    // Eval mode for the call, training mode again afterwards whatever happens.
    struct TrainAgain {
      torch::jit::Module& module;
      ~TrainAgain() {
        try {
          module.train(true);
        } catch (...) {
        }
      }
    } restore{m->module};
    m->module.train(false);
    torch::NoGradGuard no_grad;
    c10::IValue rate = (*rate_fn)(std::vector<c10::IValue>{});
    if (!rate.isInt() || rate.toInt() <= 0 || rate.toInt() > 1000000)
      fail(TTS_ERR_CONTRACT, "synthesis_sample_rate() must return a positive int (Hz)");
    c10::IValue out;
    try {
      std::vector<c10::IValue> args{c10::IValue(std::string(text)), c10::IValue(max_codes)};
      if (with_prompt) {
        if (synthesize_arity(*m) < 3)
          fail(TTS_ERR_CONTRACT, "the module's synthesize takes no voice prompt (it is synthesize(text, max_codes); "
                                 "a prompted one is synthesize(text: str, max_codes: int, prompt: Optional[Tensor] = None), "
                                 "see CONTRACT.md, Synthesis)");
        torch::Tensor p = torch::from_blob(const_cast<float*>(prompt), {prompt_count}, torch::kFloat32).clone();
        args.emplace_back(p.to(m->device));
      }
      out = (*synth)(std::move(args));
    } catch (const c10::Error& e) {
      if (mentions_oom(std::string(what_of(e)))) throw;
      fail(TTS_ERR_INTERNAL, std::string("synthesize raised: ") + what_of(e));
    }
    if (!out.isTensor()) fail(TTS_ERR_CONTRACT, "synthesize must return a Tensor (the waveform)");
    torch::Tensor wave = out.toTensor();
    if (wave.dim() != 1 || !wave.is_floating_point())
      fail(TTS_ERR_CONTRACT, "synthesize must return a 1-D floating tensor, got " + c10::str(wave.sizes()) + " " +
                                 c10::toString(wave.scalar_type()));
    wave = wave.detach().to(torch::kCPU, torch::kFloat).contiguous();
    const int64_t n = wave.numel();
    float* buffer = static_cast<float*>(std::malloc(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float)));
    if (!buffer) throw std::bad_alloc();
    if (n > 0) std::memcpy(buffer, wave.data_ptr<float>(), static_cast<size_t>(n) * sizeof(float));
    *samples_out = buffer;
    *count_out = n;
    *sample_rate_out = static_cast<int32_t>(rate.toInt());
  });
}

TTS_SHIM_API void tts_shim_free_samples(float* samples) { std::free(samples); }

// ---- waveform embeddings (ABI 3) ---------------------------------------------------------

struct tts_encoder {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  int32_t sample_rate = 0;
};

TTS_SHIM_API tts_status tts_shim_encoder_load(const char* torchscript_path, int32_t device, int32_t threads,
                                              tts_encoder** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!torchscript_path || !*torchscript_path) fail(TTS_ERR_INVALID_ARGUMENT, "encoder path is NULL or empty");
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    if (threads < 0) fail(TTS_ERR_INVALID_ARGUMENT, "threads must be >= 0");
    if (device < -1) fail(TTS_ERR_INVALID_ARGUMENT, "device must be -1 (cpu) or a CUDA index >= 0");
    auto e = std::make_unique<tts_encoder>();
    if (device >= 0) {
#ifndef TTS_SHIM_WITH_CUDA
      fail(TTS_ERR_INVALID_ARGUMENT, "device cuda:" + std::to_string(device) +
                                         " requested, but the shim was built against a CPU-only libtorch");
#endif
      const int32_t n = cuda_count();
      if (device >= n)
        fail(TTS_ERR_INVALID_ARGUMENT, "device cuda:" + std::to_string(device) + " requested, but torch sees " +
                                           std::to_string(n) + " CUDA devices");
      e->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device));
    }
    if (threads > 0) torch::set_num_threads(threads);
    struct stat st;
    if (::stat(torchscript_path, &st) != 0)
      fail(TTS_ERR_LOAD, std::string("cannot open encoder ") + torchscript_path + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail(TTS_ERR_LOAD, std::string("encoder path ") + torchscript_path + " is a directory");
    try {
      e->module = torch::jit::load(torchscript_path, e->device);
    } catch (const c10::Error& err) {
      fail(TTS_ERR_LOAD, std::string("cannot load TorchScript module ") + torchscript_path + ": " + what_of(err));
    } catch (const std::exception& err) {
      fail(TTS_ERR_LOAD, std::string("cannot load TorchScript module ") + torchscript_path + ": " + err.what());
    }
    auto rate_fn = e->module.find_method("embedding_sample_rate");
    if (!e->module.find_method("embed_waveform") || !rate_fn)
      fail(TTS_ERR_CONTRACT, std::string(torchscript_path) +
                                 " exports no embed_waveform(wav: Tensor) -> Tensor and embedding_sample_rate() -> int "
                                 "(see CONTRACT.md, Embeddings)");
    e->module.eval();
    torch::NoGradGuard no_grad;
    c10::IValue rate = (*rate_fn)(std::vector<c10::IValue>{});
    if (!rate.isInt() || rate.toInt() <= 0 || rate.toInt() > 1000000)
      fail(TTS_ERR_CONTRACT, "embedding_sample_rate() must return a positive int (Hz)");
    e->sample_rate = static_cast<int32_t>(rate.toInt());
    *out = e.release();
  });
}

TTS_SHIM_API void tts_shim_encoder_free(tts_encoder* e) {
  try {
    delete e;
  } catch (...) {
  }
}

TTS_SHIM_API int32_t tts_shim_encoder_sample_rate(const tts_encoder* e) { return e ? e->sample_rate : -1; }

TTS_SHIM_API tts_status tts_shim_embed_waveform(tts_encoder* e, const float* samples, int64_t count, float* out,
                                                int64_t capacity, int64_t* out_len) {
  if (out_len) *out_len = 0;
  return guarded([&] {
    if (!e) fail(TTS_ERR_INVALID_ARGUMENT, "encoder is NULL");
    if (count <= 0) fail(TTS_ERR_INVALID_ARGUMENT, "the waveform is empty (count " + std::to_string(count) + ")");
    if (!samples) fail(TTS_ERR_INVALID_ARGUMENT, "samples is NULL");
    bool audible = false;
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(samples[i]))
        fail(TTS_ERR_INVALID_ARGUMENT, "sample " + std::to_string(i) + " is not finite");
      if (samples[i] != 0.0f) audible = true;
    }
    if (!audible) fail(TTS_ERR_INVALID_ARGUMENT, "the waveform is silent (every sample is 0): it has no embedding");
    auto method = e->module.find_method("embed_waveform");
    if (!method) fail(TTS_ERR_CONTRACT, "the encoder exports no embed_waveform");
    torch::NoGradGuard no_grad;
    torch::Tensor wave = torch::from_blob(const_cast<float*>(samples), {count}, torch::kFloat32);
    wave = e->device.is_cpu() ? wave.clone() : wave.to(e->device, /*non_blocking=*/false, /*copy=*/true);
    c10::IValue result;
    try {
      result = (*method)(std::vector<c10::IValue>{c10::IValue(wave)});
    } catch (const c10::Error& err) {
      const std::string msg = what_of(err);
      if (mentions_oom(msg)) throw;
      fail(mentions_shape(msg) ? TTS_ERR_SHAPE : TTS_ERR_INTERNAL, "embed_waveform raised: " + summarize(msg));
    }
    if (!result.isTensor()) fail(TTS_ERR_CONTRACT, "embed_waveform must return a Tensor (the embedding)");
    torch::Tensor embedding = result.toTensor();
    if (embedding.dim() != 1 || !embedding.is_floating_point() || embedding.numel() == 0)
      fail(TTS_ERR_CONTRACT, "embed_waveform must return a non-empty 1-D floating tensor, got " +
                                 c10::str(embedding.sizes()) + " " + c10::toString(embedding.scalar_type()));
    embedding = embedding.detach().to(torch::kCPU, torch::kFloat).contiguous();
    const int64_t n = embedding.numel();
    if (out_len) *out_len = n;
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL (the embedding has " + std::to_string(n) + " values)");
    if (capacity < n)
      fail(TTS_ERR_INVALID_ARGUMENT, "capacity " + std::to_string(capacity) + " < the embedding's " + std::to_string(n) +
                                         " values");
    std::memcpy(out, embedding.data_ptr<float>(), static_cast<size_t>(n) * sizeof(float));
  });
}

// ---- data-parallel groups (ABI 5) ------------------------------------------------------------

TTS_SHIM_API tts_status tts_shim_group_join(const char* master_addr, int32_t master_port, const char* local_addr,
                                            int32_t rank, int32_t world_size, double timeout_seconds, tts_group** out) {
  if (out) *out = nullptr;
  return guarded([&] {
    if (!master_addr || !*master_addr) fail(TTS_ERR_INVALID_ARGUMENT, "master_addr is NULL or empty");
    if (!out) fail(TTS_ERR_INVALID_ARGUMENT, "out is NULL");
    if (master_port < 1 || master_port > 65535) fail(TTS_ERR_INVALID_ARGUMENT, "master_port must be in 1..65535");
    if (world_size < 1) fail(TTS_ERR_INVALID_ARGUMENT, "world_size must be >= 1");
    if (rank < 0 || rank >= world_size) fail(TTS_ERR_INVALID_ARGUMENT, "rank must be in 0..world_size-1");
    if (!(timeout_seconds > 0) || !std::isfinite(timeout_seconds)) fail(TTS_ERR_INVALID_ARGUMENT, "timeout_seconds must be > 0");
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000.0));
    const std::string master(master_addr);
    const std::string where = master + ":" + std::to_string(master_port);
    auto g = std::make_unique<tts_group>();
    g->rank = rank;
    g->size = world_size;
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(master_port);
      so.isServer = rank == 0;
      so.numWorkers = static_cast<std::size_t>(world_size);
      so.waitWorkers = true;
      so.timeout = timeout;
      g->store = c10::make_intrusive<c10d::TCPStore>(master, so);
    } catch (const c10::Error& e) {
      fail(TTS_ERR_PEER, "rank " + std::to_string(rank) + " could not join the rendezvous at " + where + ": " + what_of(e));
    } catch (const std::exception& e) {
      fail(TTS_ERR_PEER, "rank " + std::to_string(rank) + " could not join the rendezvous at " + where + ": " + e.what());
    }
    try {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->threads = 2;
      const std::string local = local_addr && *local_addr ? std::string(local_addr) : (rank == 0 ? master : std::string());
      options->devices.push_back(local.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                               : c10d::ProcessGroupGloo::createDeviceForHostname(local));
      g->group = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world_size, options);
    } catch (const c10::Error& e) {
      fail(TTS_ERR_PEER, "rank " + std::to_string(rank) + " could not connect the group of " + std::to_string(world_size) + " (rendezvous " + where + "): " + what_of(e));
    } catch (const std::exception& e) {
      fail(TTS_ERR_PEER, "rank " + std::to_string(rank) + " could not connect the group of " + std::to_string(world_size) + " (rendezvous " + where + "): " + e.what());
    }
    *out = g.release();
  });
}

TTS_SHIM_API void tts_shim_group_free(tts_group* g) {
  try {
    delete g;
  } catch (...) {
  }
}

TTS_SHIM_API tts_status tts_shim_model_join_group(tts_model* m, tts_group* g) {
  return guarded([&] {
    if (!m) fail(TTS_ERR_INVALID_ARGUMENT, "model is NULL");
    if (!g || !g->group) fail(TTS_ERR_INVALID_ARGUMENT, "group is NULL");
    if (m->group) fail(TTS_ERR_INVALID_ARGUMENT, "the model is already in a data-parallel group");
    c10::OptionalDeviceGuard device_guard;
    if (m->device.is_cuda()) device_guard.reset_device(m->device);
    torch::NoGradGuard no_grad;
    // Rank 0's parameters and buffers everywhere, one tensor at a time (once per start).
    std::vector<torch::Tensor> state = m->all_params;
    state.insert(state.end(), m->buffers.begin(), m->buffers.end());
    for (auto& t : state) {
      std::vector<torch::Tensor> v{t.detach()};
      c10d::BroadcastOptions o;
      o.rootRank = 0;
      collective("broadcasting rank 0's parameters", [&] { return g->group->broadcast(v, o); });
    }
    m->group = g->group;
    m->group_size = g->size;
  });
}
