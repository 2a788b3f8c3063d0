// Bindings of the attention family (sparsecore/attention.h).
#include <pybind11/stl.h>

#include <cmath>
#include <optional>

#include "bind_common.h"
#include "sparsecore/attention.h"

namespace sparsecore::bind {
namespace {

// (data_ptr, dtype_code, batch, heads, len, dim, stride_b, stride_h, stride_l)
using Tensor4Tuple = std::tuple<uintptr_t, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
// (block_q, block_k, batch, heads, q_blocks, k_blocks, row_ptr, col_idx, nnz)
using MaskTuple = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uintptr_t, uintptr_t, int64_t>;

AttnTensor to_tensor(const Tensor4Tuple& t, const char* what) {
  AttnTensor a;
  a.data = reinterpret_cast<void*>(std::get<0>(t));
  a.dtype = to_dtype(std::get<1>(t), what);
  a.batch = std::get<2>(t), a.heads = std::get<3>(t), a.len = std::get<4>(t), a.dim = std::get<5>(t);
  a.stride_b = std::get<6>(t), a.stride_h = std::get<7>(t), a.stride_l = std::get<8>(t);
  if (a.batch < 0 || a.heads < 0 || a.len < 0 || a.stride_b < 0 || a.stride_h < 0 || a.stride_l < 0)
    value_error(std::string("flash_attention: ") + what + " has a negative size or stride");
  if (a.dim < 1 || a.dim > kAttnMaxDim)
    value_error(std::string("flash_attention: head dim ") + std::to_string(a.dim) + " of " + what +
                " is not supported (1.." + std::to_string(kAttnMaxDim) + ")");
  if (a.batch * a.heads * a.len > 0 && a.data == nullptr) value_error(std::string("flash_attention: null ") + what);
  return a;
}

// The arguments of one attention call, checked (everything but the contents
// of device memory: kv ranges are read here only when host_ranges).
struct Call {
  AttnTensor q, k, v, out;
  AttnOptions opt;
  AttnBlockMask mask;
  bool has_mask = false;
};

Call parse_call(const Tensor4Tuple& q_t, const Tensor4Tuple& k_t, const Tensor4Tuple& v_t, const Tensor4Tuple& out_t,
                uintptr_t lse, double scale, double softcap, bool causal, int64_t window, int64_t sinks,
                uintptr_t kv_start, uintptr_t kv_end, double blasst_log_lambda, const std::optional<MaskTuple>& mask_t,
                bool host_ranges) {
  Call c;
  c.q = to_tensor(q_t, "q"), c.k = to_tensor(k_t, "k"), c.v = to_tensor(v_t, "v"), c.out = to_tensor(out_t, "out");
  const AttnTensor &q = c.q, &k = c.k, &v = c.v, &out = c.out;
  if (k.batch != q.batch || v.batch != q.batch) value_error("flash_attention: q, k and v differ in batch size");
  if (k.heads != v.heads || k.len != v.len || k.dim != v.dim) value_error("flash_attention: k and v differ in shape");
  if (k.dim != q.dim) value_error("flash_attention: q and k differ in head dim");
  if (k.dtype != v.dtype) value_error("flash_attention: k and v differ in dtype");
  if (q.heads > 0 && (k.heads == 0 || q.heads % k.heads != 0))
    value_error("flash_attention: " + std::to_string(q.heads) + " q heads are not a multiple of " +
                std::to_string(k.heads) + " KV heads");
  if (out.batch != q.batch || out.heads != q.heads || out.len != q.len || out.dim != q.dim || out.dtype != q.dtype)
    value_error("flash_attention: out does not match q");
  if (!std::isfinite(scale)) value_error("flash_attention: scale must be finite");
  if (!(softcap >= 0) || !std::isfinite(softcap)) value_error("flash_attention: softcap must be >= 0 and finite");
  if (window < 0) value_error("flash_attention: window must be >= 0");
  if (sinks < 0) value_error("flash_attention: sinks must be >= 0");
  if (window > 0 && !causal) value_error("flash_attention: a sliding window needs causal=True");
  if (causal && q.len > k.len)
    value_error("flash_attention: causal attention with more queries (" + std::to_string(q.len) + ") than keys (" +
                std::to_string(k.len) + ")");
  if (std::isnan(blasst_log_lambda) || blasst_log_lambda > 0)
    value_error("flash_attention: BLASST log(lambda) must be <= 0");
  AttnOptions& opt = c.opt;
  opt.scale = float(scale);
  opt.softcap = float(softcap);
  opt.causal = causal;
  opt.window = window;
  opt.sinks = sinks;
  opt.kv_start = reinterpret_cast<const int64_t*>(kv_start);
  opt.kv_end = reinterpret_cast<const int64_t*>(kv_end);
  opt.blasst_log_lambda = float(blasst_log_lambda);
  opt.lse = reinterpret_cast<float*>(lse);
  for (int64_t b = 0; host_ranges && b < q.batch; ++b) {
    const int64_t s = opt.kv_start ? opt.kv_start[b] : 0, e = opt.kv_end ? opt.kv_end[b] : k.len;
    if (s < 0 || e < s || e > k.len)
      value_error("flash_attention: batch " + std::to_string(b) + " has KV range [" + std::to_string(s) + ", " +
                  std::to_string(e) + ") outside [0, " + std::to_string(k.len) + ")");
  }
  if (mask_t) {
    AttnBlockMask& mask = c.mask;
    c.has_mask = true;
    std::tie(mask.block_q, mask.block_k, mask.batch, mask.heads, mask.q_blocks, mask.k_blocks, std::ignore, std::ignore,
             mask.nnz) = *mask_t;
    mask.row_ptr = reinterpret_cast<const int64_t*>(std::get<6>(*mask_t));
    mask.col_idx = reinterpret_cast<const int32_t*>(std::get<7>(*mask_t));
    if (mask.block_q <= 0 || mask.block_k <= 0 || mask.block_q % 16 || mask.block_k % 16)
      value_error("flash_attention: block sizes must be positive multiples of 16");
    if (mask.batch != 1 && mask.batch != q.batch) value_error("flash_attention: block mask batch must be 1 or B");
    if (mask.heads != 1 && mask.heads != k.heads && mask.heads != q.heads)
      value_error("flash_attention: block mask heads must be 1, the KV heads or the q heads");
    if (mask.q_blocks != (q.len + mask.block_q - 1) / mask.block_q ||
        mask.k_blocks != (k.len + mask.block_k - 1) / mask.block_k)
      value_error("flash_attention: block mask is for another q or KV length");
    if (mask.row_ptr == nullptr || (mask.nnz > 0 && mask.col_idx == nullptr) || mask.nnz < 0)
      value_error("flash_attention: null block mask lists");
  }
  return c;
}

std::pair<int64_t, int64_t> flash_attention(const Tensor4Tuple& q_t, const Tensor4Tuple& k_t, const Tensor4Tuple& v_t,
                                            const Tensor4Tuple& out_t, uintptr_t lse, double scale, double softcap,
                                            bool causal, int64_t window, int64_t sinks, uintptr_t kv_start,
                                            uintptr_t kv_end, double blasst_log_lambda,
                                            const std::optional<MaskTuple>& mask_t) {
  const Call c = parse_call(q_t, k_t, v_t, out_t, lse, scale, softcap, causal, window, sinks, kv_start, kv_end,
                            blasst_log_lambda, mask_t, true);
  AttnStats stats;
  Status s;
  {
    py::gil_scoped_release release;
    s = flash_attention_cpu(c.q, c.k, c.v, c.out, c.opt, c.has_mask ? &c.mask : nullptr, &stats);
  }
  check_status(s, "flash_attention");
  return {stats.tiles_computed, stats.tiles_skipped};
}

// Every pointer is device memory; kv ranges and block lists are clamped and
// skipped on the device instead of read here. stats: two int64 device counters.
void flash_attention_cuda_py(const Tensor4Tuple& q_t, const Tensor4Tuple& k_t, const Tensor4Tuple& v_t,
                             const Tensor4Tuple& out_t, uintptr_t lse, double scale, double softcap, bool causal,
                             int64_t window, int64_t sinks, uintptr_t kv_start, uintptr_t kv_end,
                             double blasst_log_lambda, const std::optional<MaskTuple>& mask_t, uintptr_t stats,
                             uintptr_t stream) {
  require_cuda_build();
  const Call c = parse_call(q_t, k_t, v_t, out_t, lse, scale, softcap, causal, window, sinks, kv_start, kv_end,
                            blasst_log_lambda, mask_t, false);
  if (c.q.dtype != c.k.dtype || (c.q.dtype != DType::kBFloat16 && c.q.dtype != DType::kFloat16))
    throw py::type_error("flash_attention on CUDA takes bfloat16 or float16 q, k and v of one dtype");
  if (c.q.dim != 64 && c.q.dim != 128 && c.q.dim != 256)
    value_error("flash_attention on CUDA: head dim " + std::to_string(c.q.dim) + " is not supported (64, 128, 256)");
  Status s;
  {
    py::gil_scoped_release release;
    s = flash_attention_cuda(c.q, c.k, c.v, c.out, c.opt, c.has_mask ? &c.mask : nullptr,
                             reinterpret_cast<unsigned long long*>(stats), reinterpret_cast<void*>(stream));
  }
  check_status(s, "flash_attention (CUDA)");
}

void quest_page_scores(const Tensor4Tuple& q_t, const Tensor4Tuple& kmin_t, const Tensor4Tuple& kmax_t,
                       uintptr_t scores) {
  const AttnTensor q = to_tensor(q_t, "q"), kmin = to_tensor(kmin_t, "kmin"), kmax = to_tensor(kmax_t, "kmax");
  if (kmin.batch != q.batch || kmax.batch != q.batch) value_error("quest_page_scores: q and the bounds differ in batch size");
  if (kmin.heads != kmax.heads || kmin.len != kmax.len || kmin.dim != kmax.dim)
    value_error("quest_page_scores: kmin and kmax differ in shape");
  if (kmin.dim != q.dim) value_error("quest_page_scores: q and the bounds differ in head dim");
  if (kmin.dtype != kmax.dtype) value_error("quest_page_scores: kmin and kmax differ in dtype");
  if (q.heads > 0 && (kmin.heads == 0 || q.heads % kmin.heads != 0))
    value_error("quest_page_scores: " + std::to_string(q.heads) + " q heads are not a multiple of " +
                std::to_string(kmin.heads) + " KV heads");
  if (q.batch * kmin.heads * kmin.len > 0 && scores == 0) value_error("quest_page_scores: null scores");
  Status s;
  {
    py::gil_scoped_release release;
    s = quest_page_scores_cpu(q, kmin, kmax, reinterpret_cast<float*>(scores));
  }
  check_status(s, "quest_page_scores");
}

}  // namespace

void register_attention(py::module_& m) {
  m.def("flash_attention", &flash_attention);
  m.def("flash_attention_cuda", &flash_attention_cuda_py);
  m.def("quest_page_scores", &quest_page_scores);
  m.attr("ATTN_MAX_DIM") = kAttnMaxDim;
}

}  // namespace sparsecore::bind
