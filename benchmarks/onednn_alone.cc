// oneDNN's convolutions alone, in a process without JAX or XLA: the kernels'
// own speed on ResNet-20's conv shapes, for comparison with benchmarks/conv_op.py
// (the same primitives called from JAX through research/ops/csrc/onednn_conv.cc).
//
//   bash scripts/build_onednn_conv.sh      # also builds build/onednn_conv/onednn_alone
//   build/onednn_conv/onednn_alone [rounds]
//
// Per shape and dtype (f32, bf16), median ms over `rounds` (default 7) of:
// fwd, bwd_data and bwd_weights with NHWC activations (the layout JAX holds, as
// the op uses them), and bwd_weights with the activation layouts left to
// oneDNN ("any": it picks blocked ones), the reorders of x and dy into them
// counted. Weights are in oneDNN's chosen layout throughout (the op's weight
// reorders are left out: tens of microseconds on one thread).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

using dnnl::memory;
using tag = memory::format_tag;

namespace {

dnnl::engine eng(dnnl::engine::kind::cpu, 0);

struct Shape { const char* name; int h, cin, cout, stride, pad_lo, pad_hi; };

const Shape kShapes[] = {{"32x32x16 s1", 32, 16, 16, 1, 1, 1},
                         {"32x32x16->32 s2", 32, 16, 32, 2, 1, 0},
                         {"16x16x32 s1", 16, 32, 32, 1, 1, 1},
                         {"16x16x32->64 s2", 16, 32, 64, 2, 1, 0},
                         {"8x8x64 s1", 8, 64, 64, 1, 1, 1}};

template <typename F>
double MedianMs(int rounds, F&& f) {
  f();  // Warm-up.
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    auto start = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(
        std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

memory Mem(const memory::desc& md) {
  memory m(md, eng);
  // Any bytes that are finite in both f32 and bf16: 0x3c3c3c3c.
  std::fill_n(static_cast<uint8_t*>(m.get_data_handle()), md.get_size(), 0x3c);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const int n = 128;
  dnnl::stream s(eng);
  std::printf("oneDNN %d.%d.%d alone, batch %d, %d OpenMP threads, median of %d rounds (ms)\n",
              dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, n,
              omp_get_max_threads(), rounds);
  std::printf("| dtype | shape | fwd | bwd_data | bwd_weights (NHWC) | bwd_weights (blocked, "
              "with reorders) | its reorders | GFLOP/s fwd+bwd (NHWC) |\n|---|---|---|---|---|---|---|---|\n");
  for (auto dt : {memory::data_type::f32, memory::data_type::bf16}) {
    for (const Shape& sh : kShapes) {
      const int oh = (sh.h + sh.pad_lo + sh.pad_hi - 3) / sh.stride + 1;
      memory::dims src_d{n, sh.cin, sh.h, sh.h}, dst_d{n, sh.cout, oh, oh},
          wei_d{sh.cout, sh.cin, 3, 3}, strides{sh.stride, sh.stride}, dil{0, 0},
          lo{sh.pad_lo, sh.pad_lo}, hi{sh.pad_hi, sh.pad_hi};
      memory::desc src(src_d, dt, tag::nhwc), dst(dst_d, dt, tag::nhwc),
          wei_any(wei_d, dt, tag::any), src_any(src_d, dt, tag::any), dst_any(dst_d, dt, tag::any);
      auto alg = dnnl::algorithm::convolution_direct;
      dnnl::convolution_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, alg,
                                                    src, wei_any, dst, strides, dil, lo, hi);
      dnnl::convolution_backward_data::primitive_desc bwd_d(eng, alg, src, wei_any, dst, strides,
                                                            dil, lo, hi, fwd);
      dnnl::convolution_backward_weights::primitive_desc bwd_w(eng, alg, src, wei_any, dst,
                                                               strides, dil, lo, hi, fwd);
      dnnl::convolution_forward::primitive_desc fwd_any(
          eng, dnnl::prop_kind::forward_training, alg, src_any, wei_any, dst_any, strides, dil,
          lo, hi);
      dnnl::convolution_backward_weights::primitive_desc bwd_w_any(
          eng, alg, src_any, wei_any, dst_any, strides, dil, lo, hi, fwd_any);
      memory x = Mem(src), y = Mem(dst), w = Mem(fwd.weights_desc()),
             wd = Mem(bwd_d.weights_desc()), dw = Mem(bwd_w.diff_weights_desc()),
             xb = Mem(bwd_w_any.src_desc()), dyb = Mem(bwd_w_any.diff_dst_desc()),
             dwb = Mem(bwd_w_any.diff_weights_desc());
      dnnl::convolution_forward f(fwd);
      dnnl::convolution_backward_data bd(bwd_d);
      dnnl::convolution_backward_weights bw(bwd_w), bwb(bwd_w_any);
      dnnl::reorder rx(x, xb), rdy(y, dyb);
      auto run = [&](auto&& body) { return MedianMs(rounds, [&] { body(); s.wait(); }); };
      double t_f = run([&] { f.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w},
                                           {DNNL_ARG_DST, y}}); });
      double t_bd = run([&] { bd.execute(s, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, wd},
                                             {DNNL_ARG_DIFF_DST, y}}); });
      double t_bw = run([&] { bw.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                                             {DNNL_ARG_DIFF_DST, y}}); });
      double t_re = run([&] { rx.execute(s, x, xb); rdy.execute(s, y, dyb); });
      double t_bwb = run([&] {
        rx.execute(s, x, xb);
        rdy.execute(s, y, dyb);
        bwb.execute(s, {{DNNL_ARG_SRC, xb}, {DNNL_ARG_DIFF_WEIGHTS, dwb},
                        {DNNL_ARG_DIFF_DST, dyb}});
      });
      const double gflop = 3 * 2.0 * n * oh * oh * 9 * sh.cin * sh.cout / 1e9;
      std::printf("| %s | %s | %.2f | %.2f | %.2f (%s) | %.2f (%s) | %.2f | %.0f |\n",
                  dt == memory::data_type::f32 ? "float32" : "bfloat16", sh.name, t_f, t_bd,
                  t_bw, bwd_w.impl_info_str(), t_bwb, bwd_w_any.impl_info_str(), t_re,
                  gflop / (t_f + t_bd + t_bw) * 1e3);
      std::fflush(stdout);
    }
  }
  return 0;
}
