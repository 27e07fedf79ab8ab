// 2-D convolution on the CPU through oneDNN, as three XLA FFI handlers:
//   onednn_conv_fwd          (x [N,H,W,C], w [KH,KW,C/G,O])  -> y  [N,OH,OW,O]
//   onednn_conv_bwd_data     (dy [N,OH,OW,O], w)             -> dx [N,H,W,C]
//   onednn_conv_bwd_weights  (x, dy)                         -> dw [KH,KW,C/G,O]
// NHWC activations, HWIO weights (JAX's layouts, so no transposes around the
// call), float32 or bfloat16 (all operands one dtype; oneDNN accumulates bf16
// in float32). Attributes: strides, padding_lo, padding_hi, dilation (each 2
// int64, dilation 1 = none, as lax's rhs_dilation) and groups
// (lax's feature_group_count).
//
// Primitives are created once per shape and kept: creating one costs far more
// than running a small convolution. Calls run concurrently (XLA runs
// independent convolutions, and each device of a forced multi-device CPU
// mesh, on its own threads): the cache is guarded by a mutex held only to find
// or create an entry; an entry is immutable once made; every primitive uses
// oneDNN's user-managed scratchpad, which oneDNN documents as thread-safe when
// no two executions share a buffer, and the scratchpad and the reordered
// weights live in buffers of the calling thread (thread_local). Until
// 2026-11-29 one mutex serialised whole calls because the cached entry held
// those two buffers (each call's OpenMP team size is set from Python: OnednnConvSetThreads,
// research/ops/onednn_conv.py says which default and why).
#include <cstdint>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Kind : int64_t { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

struct Geometry {
  int64_t n, h, w, c;        // Input.
  int64_t oh, ow, o;         // Output.
  int64_t kh, kw, groups;    // Kernel.
  int64_t stride[2], pad_lo[2], pad_hi[2], dilation[2];
  memory::data_type dtype;

  std::vector<int64_t> Key(Kind kind) const {
    return {kind, n, h, w, c, oh, ow, o, kh, kw, groups, stride[0], stride[1],
            pad_lo[0], pad_lo[1], pad_hi[0], pad_hi[1], dilation[0], dilation[1],
            static_cast<int64_t>(dtype)};
  }
  memory::desc Src() const { return {{n, c, h, w}, dtype, memory::format_tag::nhwc}; }
  memory::desc Dst() const { return {{n, o, oh, ow}, dtype, memory::format_tag::nhwc}; }
  // JAX's HWIO buffer described in oneDNN's (G,) O, I, KH, KW dims by strides.
  memory::desc UserWeights() const {
    const int64_t ig = c / groups, og = o / groups;
    if (groups == 1) return {{o, ig, kh, kw}, dtype, {1, o, kw * ig * o, ig * o}};
    return {{groups, og, ig, kh, kw}, dtype, {og, 1, o, kw * ig * o, ig * o}};
  }
  memory::desc AnyWeights() const {
    const int64_t ig = c / groups, og = o / groups;
    if (groups == 1) return {{o, ig, kh, kw}, dtype, memory::format_tag::any};
    return {{groups, og, ig, kh, kw}, dtype, memory::format_tag::any};
  }
  memory::dims Strides() const { return {stride[0], stride[1]}; }
  memory::dims Dilates() const { return {dilation[0] - 1, dilation[1] - 1}; }  // 0 = none.
  memory::dims PadLo() const { return {pad_lo[0], pad_lo[1]}; }
  memory::dims PadHi() const { return {pad_hi[0], pad_hi[1]}; }
};

// One cached convolution: its primitive, the reorder between JAX's HWIO weights
// and the layout the primitive chose, and the buffers both need.
struct Entry {
  dnnl::primitive conv;
  bool reorder_weights = false;
  dnnl::reorder weights_reorder;         // HWIO -> primitive's (fwd, bwd data) or back (bwd w).
  memory::desc prim_weights;
  memory::desc scratchpad_md;            // The convolution's.
  memory::desc reorder_scratchpad_md;    // The weights reorder's (usually empty).
};

// One calling thread's buffers: the primitive's weights (when reordered) and
// the scratchpads. Grown, never shrunk; used by one call at a time.
struct ThreadBuffers {
  std::vector<uint8_t> weights, scratchpad, reorder_scratchpad;
};

void* Reserve(std::vector<uint8_t>& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// The OpenMP team size of the calling thread (XLA calls handlers from its own
// threads) for one scope. oneDNN reads it when it creates a primitive and when
// it runs one, so both happen inside such a scope; 0 keeps OpenMP's default.
class TeamSize {
 public:
  explicit TeamSize(int threads) : saved_(omp_get_max_threads()) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  ~TeamSize() { omp_set_num_threads(saved_); }
 private:
  int saved_;
};

// Threads per convolution (OnednnConvSetThreads); 0: OpenMP's default.
std::atomic<int> g_threads{0};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex& CacheMutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::vector<int64_t>, std::unique_ptr<Entry>>& Cache() {
  static std::map<std::vector<int64_t>, std::unique_ptr<Entry>> cache;
  return cache;
}

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // Ours, allocated once per shape.
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardPd(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      g.Src(), g.AnyWeights(), g.Dst(), g.Strides(), g.Dilates(), g.PadLo(), g.PadHi(), Attr());
}

void FinishEntry(Entry& e, const Geometry& g, const memory::desc& prim_weights,
                 const memory::desc& scratchpad, Kind kind) {
  e.prim_weights = prim_weights;
  e.reorder_weights = prim_weights != g.UserWeights();
  if (e.reorder_weights) {
    dnnl::memory::desc from = kind == kBwdWeights ? prim_weights : g.UserWeights();
    dnnl::memory::desc to = kind == kBwdWeights ? g.UserWeights() : prim_weights;
    // Weight reorders run on one thread: the weights are small (KH x KW x C x O
    // values), and an OpenMP team's fork and join barrier cost milliseconds
    // when another process holds one of the cores (measured: 8-35 ms against
    // 0.01-0.04 ms on one thread, benchmarks/conv_op.py --sections=profile).
    TeamSize one_thread(1);
    // User scratchpad here too: a library-managed one may not be used from
    // threads other than the creating one (oneDNN's scratchpad_mode docs).
    dnnl::reorder::primitive_desc pd(Engine(), from, Engine(), to, Attr());
    e.weights_reorder = dnnl::reorder(pd);
    e.reorder_scratchpad_md = pd.scratchpad_desc();
  }
  e.scratchpad_md = scratchpad;
}

const Entry& GetEntry(const Geometry& g, Kind kind, int threads) {
  std::lock_guard<std::mutex> lock(CacheMutex());  // std::map's nodes stay put once inserted.
  auto& cache = Cache();
  auto key = g.Key(kind);
  key.push_back(threads);  // A primitive keeps the team size it was made for.
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  auto e = std::make_unique<Entry>();
  auto fwd = ForwardPd(g);
  if (kind == kFwd) {
    e->conv = dnnl::convolution_forward(fwd);
    FinishEntry(*e, g, fwd.weights_desc(), fwd.scratchpad_desc(), kind);
  } else if (kind == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(), g.Dst(),
        g.Strides(), g.Dilates(), g.PadLo(), g.PadHi(), fwd, Attr());
    e->conv = dnnl::convolution_backward_data(pd);
    FinishEntry(*e, g, pd.weights_desc(), pd.scratchpad_desc(), kind);
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(), g.Dst(),
        g.Strides(), g.Dilates(), g.PadLo(), g.PadHi(), fwd, Attr());
    e->conv = dnnl::convolution_backward_weights(pd);
    FinishEntry(*e, g, pd.diff_weights_desc(), pd.scratchpad_desc(), kind);
  }
  return *cache.emplace(std::move(key), std::move(e)).first->second;
}

ffi::Error ReadGeometry(Geometry& g, ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                        ffi::Span<const int64_t> y, ffi::DataType dtype,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                        ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                        int64_t groups) {
  if (x.size() != 4 || w.size() != 4 || y.size() != 4)
    return ffi::Error::InvalidArgument("onednn_conv: operands must be rank 4 (NHWC, HWIO)");
  if (strides.size() != 2 || padding_lo.size() != 2 || padding_hi.size() != 2 ||
      dilation.size() != 2)
    return ffi::Error::InvalidArgument("onednn_conv: strides, paddings, dilation need 2 values");
  if (dtype == ffi::DataType::F32) {
    g.dtype = memory::data_type::f32;
  } else if (dtype == ffi::DataType::BF16) {
    g.dtype = memory::data_type::bf16;
  } else {
    return ffi::Error::InvalidArgument("onednn_conv: dtype must be float32 or bfloat16");
  }
  g.n = x[0]; g.h = x[1]; g.w = x[2]; g.c = x[3];
  g.kh = w[0]; g.kw = w[1]; g.o = w[3];
  g.oh = y[1]; g.ow = y[2];
  g.groups = groups;
  for (int i = 0; i < 2; ++i) {
    g.stride[i] = strides[i]; g.pad_lo[i] = padding_lo[i];
    g.pad_hi[i] = padding_hi[i]; g.dilation[i] = dilation[i];
  }
  if (groups < 1 || g.c % groups || g.o % groups || w[2] * groups != g.c || y[3] != g.o ||
      y[0] != g.n)
    return ffi::Error::InvalidArgument("onednn_conv: operand shapes disagree with groups");
  return ffi::Error::Success();
}

ffi::Error Run(Kind kind, const Geometry& g, void* x, void* w, void* y) {
  thread_local ThreadBuffers buffers;
  const int threads = g_threads.load();
  TeamSize team(threads);
  try {
    const Entry& e = GetEntry(g, kind, threads);
    dnnl::engine& eng = Engine();
    dnnl::stream stream(eng);
    memory src(g.Src(), eng, x), dst(g.Dst(), eng, y), user_w(g.UserWeights(), eng, w);
    memory prim_w = e.reorder_weights
        ? memory(e.prim_weights, eng, Reserve(buffers.weights, e.prim_weights.get_size()))
        : user_w;
    memory scratch(e.scratchpad_md, eng,
                   Reserve(buffers.scratchpad, e.scratchpad_md.get_size()));
    memory reorder_scratch;
    if (e.reorder_weights) {
      reorder_scratch = memory(e.reorder_scratchpad_md, eng,
                               Reserve(buffers.reorder_scratchpad,
                                       e.reorder_scratchpad_md.get_size()));
    }
    if (kind != kBwdWeights && e.reorder_weights) {
      TeamSize one_thread(1);
      e.weights_reorder.execute(stream, {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, prim_w},
                                         {DNNL_ARG_SCRATCHPAD, reorder_scratch}});
    }
    if (kind == kFwd) {
      e.conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, prim_w},
                              {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else if (kind == kBwdData) {
      e.conv.execute(stream, {{DNNL_ARG_DIFF_SRC, src}, {DNNL_ARG_WEIGHTS, prim_w},
                              {DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      e.conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_WEIGHTS, prim_w},
                              {DNNL_ARG_DIFF_DST, dst}, {DNNL_ARG_SCRATCHPAD, scratch}});
      if (e.reorder_weights) {
        TeamSize one_thread(1);
        e.weights_reorder.execute(stream, {{DNNL_ARG_FROM, prim_w}, {DNNL_ARG_TO, user_w},
                                           {DNNL_ARG_SCRATCHPAD, reorder_scratch}});
      }
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn_conv: oneDNN: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error ConvFwd(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                   ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                   ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                   int64_t groups) {
  Geometry g;
  if (auto err = ReadGeometry(g, x.dimensions(), w.dimensions(), y->dimensions(),
                              x.element_type(), strides, padding_lo, padding_hi, dilation,
                              groups); err.failure())
    return err;
  return Run(kFwd, g, x.untyped_data(), w.untyped_data(), y->untyped_data());
}

ffi::Error ConvBwdData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                       ffi::Span<const int64_t> padding_hi, ffi::Span<const int64_t> dilation,
                       int64_t groups) {
  Geometry g;
  if (auto err = ReadGeometry(g, dx->dimensions(), w.dimensions(), dy.dimensions(),
                              dy.element_type(), strides, padding_lo, padding_hi, dilation,
                              groups); err.failure())
    return err;
  return Run(kBwdData, g, dx->untyped_data(), w.untyped_data(), dy.untyped_data());
}

ffi::Error ConvBwdWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                          ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding_lo,
                          ffi::Span<const int64_t> padding_hi,
                          ffi::Span<const int64_t> dilation, int64_t groups) {
  Geometry g;
  if (auto err = ReadGeometry(g, x.dimensions(), dw->dimensions(), dy.dimensions(),
                              x.element_type(), strides, padding_lo, padding_hi, dilation,
                              groups); err.failure())
    return err;
  return Run(kBwdWeights, g, x.untyped_data(), dw->untyped_data(), dy.untyped_data());
}

}  // namespace

#define ONEDNN_CONV_BINDING(ARG0, ARG1)                  \
  ffi::Ffi::Bind()                                       \
      .Arg<ffi::AnyBuffer>()                             \
      .Arg<ffi::AnyBuffer>()                             \
      .Ret<ffi::AnyBuffer>()                             \
      .Attr<ffi::Span<const int64_t>>("strides")         \
      .Attr<ffi::Span<const int64_t>>("padding_lo")      \
      .Attr<ffi::Span<const int64_t>>("padding_hi")      \
      .Attr<ffi::Span<const int64_t>>("dilation")        \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvFwd, ConvFwd, ONEDNN_CONV_BINDING(x, w));
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBwdData, ConvBwdData, ONEDNN_CONV_BINDING(dy, w));
XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnConvBwdWeights, ConvBwdWeights, ONEDNN_CONV_BINDING(x, dy));

// Sets the OpenMP threads of each convolution from now on; 0: OpenMP's default
// (OMP_NUM_THREADS, else one per core).
extern "C" void OnednnConvSetThreads(int threads) { g_threads.store(threads < 0 ? 0 : threads); }

// The oneDNN version this library runs with, for logs: major*10000 + minor*100 + patch.
extern "C" int64_t OnednnConvVersion() {
  const dnnl_version_t* v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}
