// CPU entry point of flash attention: argument and mask checks, the task
// grid (batch x KV head or q head x q block), split-KV for decode with its
// log-sum-exp merge, ISA dispatch and threading. Baseline TU (no -m flags).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/dense_pack.h"
#include "../common/isa_pick.h"
#include "../common/run_parts.h"
#include "../thread_pool.h"
#include "attention_isa.h"
#include "sparsecore/attention.h"
#include "sparsecore/cpu_isa.h"

namespace sparsecore {
namespace {

using AttnFn = bool (*)(const cpu::AttnArgs&, const cpu::AttnRows&, float*, const cpu::AttnPartial*, AttnStats*);

// Keys a split-KV part should at least hold: below this the merge and the
// per-part setup cost more than the parallelism gains.
constexpr int64_t kMinSplitKeys = 512;

bool tensor_ok(const AttnTensor& t) {
  if (t.batch < 0 || t.heads < 0 || t.len < 0 || t.dim < 1 || t.dim > kAttnMaxDim) return false;
  if (t.stride_b < 0 || t.stride_h < 0 || t.stride_l < 0) return false;
  return t.batch * t.heads * t.len == 0 || t.data != nullptr;
}

Status check_args(const AttnTensor& q, const AttnTensor& k, const AttnTensor& v, const AttnTensor& out,
                  const AttnOptions& opt) {
  if (!tensor_ok(q) || !tensor_ok(k) || !tensor_ok(v) || !tensor_ok(out)) return Status::kInvalidArgument;
  if (k.batch != q.batch || v.batch != q.batch || k.heads != v.heads || k.len != v.len) return Status::kInvalidArgument;
  if (k.dim != q.dim || v.dim != q.dim || k.dtype != v.dtype) return Status::kInvalidArgument;
  if (out.batch != q.batch || out.heads != q.heads || out.len != q.len || out.dim != q.dim || out.dtype != q.dtype)
    return Status::kInvalidArgument;
  if (q.heads > 0 && (k.heads == 0 || q.heads % k.heads != 0)) return Status::kInvalidArgument;
  if (!std::isfinite(opt.scale) || !(opt.softcap >= 0.f) || !std::isfinite(opt.softcap)) return Status::kInvalidArgument;
  if (opt.window < 0 || opt.sinks < 0 || (opt.window > 0 && !opt.causal)) return Status::kInvalidArgument;
  if (opt.causal && q.len > k.len) return Status::kInvalidArgument;
  if (std::isnan(opt.blasst_log_lambda) || opt.blasst_log_lambda > 0.f) return Status::kInvalidArgument;
  if (opt.block_q < 0 || opt.block_k < 0 || opt.block_q % 16 || opt.block_k % 16) return Status::kInvalidArgument;
  for (int64_t b = 0; b < q.batch; ++b) {
    const int64_t s = opt.kv_start ? opt.kv_start[b] : 0, e = opt.kv_end ? opt.kv_end[b] : k.len;
    if (s < 0 || e < s || e > k.len) return Status::kInvalidArgument;
  }
  return Status::kOk;
}

// The mask's shape and row pointers (O(rows)); the block indices are checked
// by the kernel as it reads them.
Status check_mask(const AttnBlockMask& m, const AttnTensor& q, const AttnTensor& k) {
  if (m.block_q <= 0 || m.block_k <= 0 || m.block_q % 16 || m.block_k % 16) return Status::kInvalidArgument;
  if (m.batch != 1 && m.batch != q.batch) return Status::kInvalidArgument;
  if (m.heads != 1 && m.heads != k.heads && m.heads != q.heads) return Status::kInvalidArgument;
  if (m.q_blocks != (q.len + m.block_q - 1) / m.block_q || m.k_blocks != (k.len + m.block_k - 1) / m.block_k)
    return Status::kInvalidArgument;
  const int64_t rows = m.batch * m.heads * m.q_blocks;
  if (!m.row_ptr || m.nnz < 0 || (m.nnz > 0 && !m.col_idx)) return Status::kInvalidArgument;
  if (m.row_ptr[0] != 0 || m.row_ptr[rows] != m.nnz) return Status::kInvalidIndex;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = m.row_ptr[r + 1] - m.row_ptr[r];
    if (n < 0 || n > m.k_blocks) return Status::kInvalidIndex;
  }
  return Status::kOk;
}

// Merges the split-KV parts of one task's rows by log-sum-exp into out/lse.
void merge_parts(const cpu::AttnArgs& a, const cpu::AttnRows& w, const std::vector<float>& o,
                 const std::vector<float>& m, const std::vector<float>& l, const std::vector<uint8_t>& poison,
                 int64_t base, int64_t parts, int64_t stride, int64_t rows) {
  const int64_t dim = a.q.dim, nq = w.i1 - w.i0;
  std::vector<float> acc(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    float mx = -INFINITY;
    bool bad = false;
    for (int64_t p = 0; p < parts; ++p) {
      const int64_t idx = (base + p) * stride + r;
      bad |= poison[size_t(idx)] != 0;
      if (l[size_t(idx)] > 0.f) mx = std::max(mx, m[size_t(idx)]);
    }
    std::fill(acc.begin(), acc.end(), 0.f);
    float sum = 0.f;
    for (int64_t p = 0; p < parts; ++p) {
      const int64_t idx = (base + p) * stride + r;
      if (!(l[size_t(idx)] > 0.f)) continue;
      const float f = std::exp(m[size_t(idx)] - mx);
      sum += f * l[size_t(idx)];
      const float* src = o.data() + size_t(idx * dim);
      for (int64_t d = 0; d < dim; ++d) acc[size_t(d)] += f * src[d];
    }
    const int64_t h = w.h0 + r / nq, i = w.i0 + r % nq;
    const bool empty = !(sum > 0.f);
    const float mul = empty ? 0.f : 1.f / sum;
    const AttnTensor& out = a.out;
    const int64_t off = w.b * out.stride_b + h * out.stride_h + i * out.stride_l;
    for (int64_t d = 0; d < dim; ++d)
      store_from_float(out.data, off + d, out.dtype, bad ? NAN : acc[size_t(d)] * mul);
    if (a.opt.lse) {
      const float lse = bad ? NAN : empty ? -INFINITY : mx + std::log(sum);
      a.opt.lse[(w.b * a.q.heads + h) * a.q.len + i] = lse;
    }
  }
}

}  // namespace

Status flash_attention_cpu(const AttnTensor& q, const AttnTensor& k, const AttnTensor& v, const AttnTensor& out,
                           const AttnOptions& opt, const AttnBlockMask* mask, AttnStats* stats) {
  return cpu::guarded([&]() -> Status {
    if (Status s = check_args(q, k, v, out, opt); s != Status::kOk) return s;
    if (mask) {
      if (Status s = check_mask(*mask, q, k); s != Status::kOk) return s;
    }
    if (stats) *stats = AttnStats{};
    const int64_t B = q.batch, hq = q.heads, hkv = k.heads, lq = q.len, lk = k.len;
    if (B == 0 || hq == 0 || lq == 0) return Status::kOk;

    cpu::AttnArgs a;
    a.q = q, a.k = k, a.v = v, a.out = out, a.opt = opt;
    a.group = hq / hkv;
    std::vector<int64_t> starts(static_cast<size_t>(B)), ends(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      starts[size_t(b)] = opt.kv_start ? opt.kv_start[b] : 0;
      ends[size_t(b)] = opt.kv_end ? opt.kv_end[b] : lk;
    }
    a.kv_start = starts.data();
    a.kv_end = ends.data();

    // The task grid. A mask with one list per q head splits the GQA group.
    const bool per_q_head = mask && mask->heads == hq && a.group > 1;
    const int64_t nh = per_q_head ? 1 : a.group;
    const int64_t heads_out = per_q_head ? hq : hkv;
    int64_t block_q, block_k, k_blocks;
    if (mask) {
      block_q = mask->block_q, block_k = mask->block_k, k_blocks = mask->k_blocks;
    } else {
      // About 64 rows per task (heads of the group x positions): enough rows to
      // amortise converting each K/V tile, few enough to keep a task's state in L2.
      block_q = opt.block_q ? opt.block_q : std::max<int64_t>(16, (64 / a.group + 15) / 16 * 16);
      block_k = opt.block_k ? opt.block_k : cpu::kAttnTileK;
      k_blocks = (lk + block_k - 1) / block_k;
    }
    a.k_blocks = k_blocks;
    const int64_t q_blocks = (lq + block_q - 1) / block_q;
    const int64_t tasks = B * heads_out * q_blocks;

    auto task_rows = [&](int64_t t) {
      // Later q blocks (more keys under a causal mask) first, for load balance.
      const int64_t qb = q_blocks - 1 - t % q_blocks;
      const int64_t bh = t / q_blocks, b = bh / heads_out, hh = bh % heads_out;
      cpu::AttnRows w;
      w.b = b;
      w.kv_head = per_q_head ? hh / a.group : hh;
      w.h0 = per_q_head ? hh : hh * a.group;
      w.nh = nh;
      w.i0 = qb * block_q;
      w.i1 = std::min(lq, w.i0 + block_q);
      w.block_k = block_k;
      if (mask) {
        const int64_t mb = mask->batch == 1 ? 0 : b;
        const int64_t mh = mask->heads == 1 ? 0 : (mask->heads == hq ? w.h0 : w.kv_head);
        const int64_t r = (mb * mask->heads + mh) * q_blocks + qb;
        w.blocks = mask->col_idx;
        w.e0 = mask->row_ptr[r];
        w.e1 = mask->row_ptr[r + 1];
      } else {
        // Only the blocks the rows can see at all (causal, window, padding).
        const int64_t kvs = starts[size_t(b)], kve = ends[size_t(b)];
        int64_t lo = kvs, hi = kve;
        if (opt.causal) hi = std::min(hi, lk - lq + w.i1);
        if (opt.window > 0 && opt.sinks == 0) lo = std::max(lo, lk - lq + w.i0 - opt.window + 1);
        w.e0 = std::max<int64_t>(0, lo / block_k);
        w.e1 = std::max(w.e0, std::min(k_blocks, (hi + block_k - 1) / block_k));
      }
      return w;
    };

    const AttnFn fn = cpu::pick<AttnFn>(&cpu::scalar::attn_rows, SC_AVX2(attn_rows), SC_AVX512(attn_rows),
                                        SC_SIMDE(attn_rows));
    const int64_t rows = nh * block_q;
    const int64_t scratch_floats = cpu::attn_scratch_floats(rows, q.dim);
    const int threads = cpu_num_threads();
    std::vector<AttnStats> task_stats;

    // Split-KV (flash-decoding) when the grid has too few tasks for the
    // threads and each task has many keys: parts of each task's list run in
    // parallel and are merged by log-sum-exp.
    int64_t max_entries = 0;
    for (int64_t t = 0; t < tasks && tasks < 2 * threads; ++t) {
      const cpu::AttnRows w = task_rows(t);
      max_entries = std::max(max_entries, w.e1 - w.e0);
    }
    const int64_t max_parts = max_entries * block_k / kMinSplitKeys;
    const int64_t parts = tasks < 2 * threads ? std::max<int64_t>(1, std::min((4 * threads + tasks - 1) / tasks, max_parts)) : 1;

    if (parts == 1) {
      task_stats.assign(size_t(tasks), AttnStats{});
      Status s = cpu::run_parts(tasks, tasks > 1 && threads > 1, [&](int64_t t) {
        const cpu::AttnRows w = task_rows(t);
        return fn(a, w, cpu::thread_scratch(scratch_floats), nullptr, &task_stats[size_t(t)]);
      });
      if (s != Status::kOk) return s;
    } else {
      const int64_t prow = rows;  // rows per task, as stored in the part buffers
      const size_t part_rows = static_cast<size_t>(tasks * parts * prow);
      std::vector<float> po(part_rows * static_cast<size_t>(q.dim)), pm(part_rows), pl(part_rows);
      std::vector<uint8_t> pp(part_rows);
      task_stats.assign(size_t(tasks * parts), AttnStats{});
      Status s = cpu::run_parts(tasks * parts, true, [&](int64_t i) {
        const int64_t t = i / parts, p = i % parts;
        cpu::AttnRows w = task_rows(t);
        const int64_t n = w.e1 - w.e0;
        const int64_t e0 = w.e0 + n * p / parts, e1 = w.e0 + n * (p + 1) / parts;
        w.e0 = e0, w.e1 = e1;
        const int64_t off = i * prow;
        cpu::AttnPartial part{po.data() + off * q.dim, pm.data() + off, pl.data() + off, pp.data() + off};
        return fn(a, w, cpu::thread_scratch(scratch_floats), &part, &task_stats[size_t(i)]);
      });
      if (s != Status::kOk) return s;
      s = cpu::parallel_for(tasks, [&](int64_t t) {
        const cpu::AttnRows w = task_rows(t);
        merge_parts(a, w, po, pm, pl, pp, t * parts, parts, prow, w.nh * (w.i1 - w.i0));
      });
      if (s != Status::kOk) return s;
    }
    if (stats) {
      for (const AttnStats& t : task_stats) {
        stats->tiles_computed += t.tiles_computed;
        stats->tiles_skipped += t.tiles_skipped;
      }
    }
    return Status::kOk;
  });
}

}  // namespace sparsecore
