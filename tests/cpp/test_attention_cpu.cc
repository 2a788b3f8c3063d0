// Flash attention on every ISA path compiled in and runnable here, against a
// float64 reference written from the position rules of attention.h. Covers
// the three dtypes, GQA ratios, head dims with and without vector tails, odd
// q and KV lengths, causal offsets, windows with sinks, per-batch KV ranges,
// soft-capping, block lists (per head and shared), split-KV decode, the
// log-sum-exp output, empty rows, non-finite inputs, the bad-input statuses
// and Quest's page scores.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "dense_check.h"
#include "sparsecore/attention.h"
#include "sparsecore/cpu_isa.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::testing;

namespace {

struct Tensor4 {
  int64_t B, H, L, D;
  DType dtype;
  std::vector<float> f32;  // logical values (already rounded to dtype)
  std::vector<uint16_t> b16;
  // Stored as [B, L, H, D] (HF's layout before the transpose) when interleaved.
  bool interleaved;
  Tensor4(int64_t b, int64_t h, int64_t l, int64_t d, DType t, bool inter)
      : B(b), H(h), L(l), D(d), dtype(t), interleaved(inter) {
    f32.assign(size_t(b * h * l * d), 0.f);
    if (t != DType::kFloat32) b16.assign(f32.size(), 0);
  }
  int64_t offset(int64_t b, int64_t h, int64_t l) const {
    return interleaved ? ((b * L + l) * H + h) * D : ((b * H + h) * L + l) * D;
  }
  void set(int64_t b, int64_t h, int64_t l, int64_t d, float x) {
    const int64_t o = offset(b, h, l) + d;
    if (dtype == DType::kFloat32) {
      f32[size_t(o)] = x;
    } else {
      b16[size_t(o)] = dtype == DType::kBFloat16 ? float_to_bf16(x) : float_to_fp16(x);
      f32[size_t(o)] = dtype == DType::kBFloat16 ? bf16_to_float(b16[size_t(o)]) : fp16_to_float(b16[size_t(o)]);
    }
  }
  float at(int64_t b, int64_t h, int64_t l, int64_t d) const {
    const int64_t o = offset(b, h, l) + d;
    if (dtype == DType::kFloat32) return f32[size_t(o)];
    return dtype == DType::kBFloat16 ? bf16_to_float(b16[size_t(o)]) : fp16_to_float(b16[size_t(o)]);
  }
  AttnTensor view() {
    AttnTensor t;
    t.data = dtype == DType::kFloat32 ? static_cast<void*>(f32.data()) : static_cast<void*>(b16.data());
    t.dtype = dtype;
    t.batch = B, t.heads = H, t.len = L, t.dim = D;
    t.stride_b = H * L * D;
    t.stride_h = interleaved ? D : L * D;
    t.stride_l = interleaved ? H * D : D;
    return t;
  }
};

struct Case {
  int64_t B, hq, hkv, lq, lk, D;
  DType dt;
  bool causal;
  int64_t window, sinks;
  bool ranges;       // per-batch kv_start / kv_end
  float softcap;
  int mask;          // 0: none, 1: one list for all heads, 2: per q head
  bool interleaved;  // [B, L, H, D] storage
};

bool visible(const Case& c, int64_t start, int64_t end, int64_t i, int64_t j) {
  if (j < start || j >= end) return false;
  const int64_t pos = c.lk - c.lq + i;
  if (c.causal && j > pos) return false;
  if (c.window > 0 && pos - j >= c.window && j >= start + c.sinks) return false;
  return true;
}

void run_case(const Case& c, std::mt19937& rng, bool with_split_threads) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor4 q(c.B, c.hq, c.lq, c.D, c.dt, c.interleaved), k(c.B, c.hkv, c.lk, c.D, c.dt, c.interleaved),
      v(c.B, c.hkv, c.lk, c.D, c.dt, c.interleaved), out(c.B, c.hq, c.lq, c.D, c.dt, c.interleaved);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.hq; ++h)
      for (int64_t i = 0; i < c.lq; ++i)
        for (int64_t d = 0; d < c.D; ++d) q.set(b, h, i, d, 2.f * u(rng));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.hkv; ++h)
      for (int64_t j = 0; j < c.lk; ++j)
        for (int64_t d = 0; d < c.D; ++d) k.set(b, h, j, d, u(rng)), v.set(b, h, j, d, u(rng));
  std::vector<int64_t> starts(size_t(c.B), 0), ends(size_t(c.B), c.lk);
  if (c.ranges)
    for (int64_t b = 0; b < c.B; ++b) {
      starts[size_t(b)] = b % 2 ? int64_t(rng() % 5) : 0;
      ends[size_t(b)] = b % 2 ? c.lk : c.lk - int64_t(rng() % 4);
      if (c.causal && ends[size_t(b)] < c.lq) ends[size_t(b)] = c.lq;
    }
  const float scale = 1.f / std::sqrt(float(c.D));

  // Block lists: random subsets (always including the last block) per q block.
  const int64_t bq = 32, bk = 48;
  const int64_t qbs = (c.lq + bq - 1) / bq, kbs = (c.lk + bk - 1) / bk;
  const int64_t mheads = c.mask == 2 ? c.hq : 1;
  std::vector<int64_t> row_ptr(1, 0);
  std::vector<int32_t> cols;
  std::vector<uint8_t> listed(size_t(mheads * qbs * kbs), 0);
  for (int64_t h = 0; h < mheads; ++h)
    for (int64_t qb = 0; qb < qbs; ++qb) {
      for (int64_t kb = 0; kb < kbs; ++kb)
        if (kb == kbs - 1 || rng() % 3 != 0) {
          cols.push_back(int32_t(kb));
          listed[size_t((h * qbs + qb) * kbs + kb)] = 1;
        }
      row_ptr.push_back(int64_t(cols.size()));
    }
  AttnBlockMask mask;
  mask.block_q = bq, mask.block_k = bk, mask.batch = 1, mask.heads = mheads;
  mask.q_blocks = qbs, mask.k_blocks = kbs;
  mask.row_ptr = row_ptr.data(), mask.col_idx = cols.data(), mask.nnz = int64_t(cols.size());

  AttnOptions opt;
  opt.scale = scale, opt.softcap = c.softcap, opt.causal = c.causal, opt.window = c.window, opt.sinks = c.sinks;
  if (c.ranges) opt.kv_start = starts.data(), opt.kv_end = ends.data();
  std::vector<float> lse(size_t(c.B * c.hq * c.lq), 123.f);
  opt.lse = lse.data();
  AttnStats stats;
  const Status s = flash_attention_cpu(q.view(), k.view(), v.view(), out.view(), opt, c.mask ? &mask : nullptr, &stats);
  CHECK(s == Status::kOk, "status %d", int(s));
  if (s != Status::kOk) return;

  // Reference in float64 on the stored (rounded) inputs.
  const double tol = c.dt == DType::kFloat32 ? 2e-5 : (c.dt == DType::kBFloat16 ? 1.2e-2 : 1.5e-3);
  const int64_t group = c.hq / c.hkv;
  int bad = 0;
  for (int64_t b = 0; b < c.B && bad < 3; ++b)
    for (int64_t h = 0; h < c.hq && bad < 3; ++h)
      for (int64_t i = 0; i < c.lq && bad < 3; ++i) {
        const int64_t g = h / group;
        std::vector<double> sc(size_t(c.lk), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < c.lk; ++j) {
          if (!visible(c, starts[size_t(b)], ends[size_t(b)], i, j)) continue;
          if (c.mask && !listed[size_t(((c.mask == 2 ? h : 0) * qbs + i / bq) * kbs + j / bk)]) continue;
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d) dot += double(q.at(b, h, i, d)) * double(k.at(b, g, j, d));
          dot *= scale;
          if (c.softcap > 0) dot = c.softcap * std::tanh(dot / c.softcap);
          sc[size_t(j)] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0;
        std::vector<double> o(size_t(c.D), 0.0);
        if (mx > -INFINITY)
          for (int64_t j = 0; j < c.lk; ++j) {
            if (sc[size_t(j)] == -INFINITY) continue;
            const double p = std::exp(sc[size_t(j)] - mx);
            sum += p;
            for (int64_t d = 0; d < c.D; ++d) o[size_t(d)] += p * double(v.at(b, g, j, d));
          }
        for (int64_t d = 0; d < c.D; ++d) {
          const double want = sum > 0 ? o[size_t(d)] / sum : 0.0;
          const double got = out.at(b, h, i, d);
          if (!(std::fabs(got - want) <= tol * (1 + std::fabs(want)))) {
            CHECK(false, "B%lld hq%lld hkv%lld lq%lld lk%lld D%lld dt%d causal%d win%lld sinks%lld mask%d split%d: "
                  "out[%lld,%lld,%lld,%lld] = %g, want %g",
                  (long long)c.B, (long long)c.hq, (long long)c.hkv, (long long)c.lq, (long long)c.lk,
                  (long long)c.D, int(c.dt), int(c.causal), (long long)c.window, (long long)c.sinks, c.mask,
                  int(with_split_threads), (long long)b, (long long)h, (long long)i, (long long)d, got, want);
            ++bad;
            break;
          }
        }
        const double want_lse = sum > 0 ? mx + std::log(sum) : -INFINITY;
        const float got_lse = lse[size_t((b * c.hq + h) * c.lq + i)];
        const bool lse_ok = sum > 0 ? std::fabs(got_lse - want_lse) <= 1e-4 * (1 + std::fabs(want_lse))
                                    : got_lse == -INFINITY;
        if (!lse_ok) {
          CHECK(false, "lse[%lld,%lld,%lld] = %g, want %g", (long long)b, (long long)h, (long long)i, got_lse, want_lse);
          ++bad;
        }
      }
  CHECK(stats.tiles_skipped == 0, "no BLASST, but %lld tiles skipped", (long long)stats.tiles_skipped);
}

void test_cases(std::mt19937& rng, bool split) {
  const DType dts[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};
  std::vector<Case> cases;
  for (DType dt : dts) {
    cases.push_back({1, 3, 1, 7, 7, 64, dt, true, 0, 0, false, 0.f, 0, false});
    cases.push_back({2, 4, 4, 65, 65, 96, dt, true, 0, 0, true, 0.f, 0, true});
    cases.push_back({1, 6, 2, 1, 300, 128, dt, true, 0, 0, false, 0.f, 0, false});
    cases.push_back({2, 8, 1, 16, 200, 20, dt, true, 0, 0, true, 0.f, 0, false});
    cases.push_back({1, 2, 2, 90, 130, 256, dt, false, 0, 0, false, 0.f, 1, false});
    cases.push_back({1, 3, 1, 100, 161, 64, dt, true, 40, 4, false, 0.f, 0, true});
    cases.push_back({1, 4, 2, 70, 70, 64, dt, true, 17, 0, false, 30.f, 2, false});
    cases.push_back({1, 9, 3, 33, 97, 64, dt, true, 0, 0, false, 0.f, 2, false});
    // Decode-kernel shapes (at most 8 rows per KV head, whole vectors of the head dim).
    cases.push_back({2, 8, 2, 2, 333, 64, dt, true, 100, 4, true, 20.f, 0, true});
    cases.push_back({1, 4, 4, 1, 200, 96, dt, true, 0, 0, false, 0.f, 2, false});
    cases.push_back({3, 7, 1, 1, 129, 32, dt, true, 0, 0, true, 0.f, 1, false});
    cases.push_back({1, 2, 1, 3, 70, 128, dt, false, 0, 0, false, 0.f, 0, false});
  }
  if (split || !small_grid()) {
    // Long KV with few tasks: the split-KV path and its merge.
    cases.push_back({1, 4, 1, 1, 2500, 64, DType::kFloat32, true, 0, 0, false, 0.f, 0, false});
    cases.push_back({1, 4, 2, 3, 1900, 128, DType::kBFloat16, true, 300, 4, false, 0.f, 0, false});
    cases.push_back({2, 2, 2, 1, 1500, 64, DType::kFloat32, true, 0, 0, true, 0.f, 1, true});
  }
  for (const Case& c : cases) run_case(c, rng, split);
}

AttnTensor make(std::vector<float>& buf, int64_t B, int64_t H, int64_t L, int64_t D) {
  buf.assign(size_t(std::max<int64_t>(1, B * H * L * D)), 0.5f);
  AttnTensor t;
  t.data = buf.data(), t.batch = B, t.heads = H, t.len = L, t.dim = D;
  t.stride_b = H * L * D, t.stride_h = L * D, t.stride_l = D;
  return t;
}

void test_nonfinite_and_empty() {
  std::vector<float> qb, kb, vb, ob;
  AttnTensor q = make(qb, 1, 2, 4, 16), k = make(kb, 1, 1, 8, 16), v = make(vb, 1, 1, 8, 16), o = make(ob, 1, 2, 4, 16);
  for (size_t i = 0; i < kb.size(); ++i) kb[i] = float(i % 7) * 0.1f, vb[i] = float(i % 5) * 0.2f;
  qb[16 * 1 + 3] = NAN;                         // head 0, row 1
  vb[16 * 6 + 2] = INFINITY;                    // key 6: rows that see it (positions >= 6)
  AttnOptions opt;
  std::vector<float> lse(8);
  opt.lse = lse.data();
  CHECK(flash_attention_cpu(q, k, v, o, opt, nullptr, nullptr) == Status::kOk, "nonfinite call");
  // Positions of rows 0..3 are 4..7; key 6 is visible from rows 2 and 3.
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 4; ++i) {
      const bool want_nan = (h == 0 && i == 1) || i >= 2;
      bool got_nan = std::isnan(lse[size_t(h * 4 + i)]), finite = std::isfinite(lse[size_t(h * 4 + i)]);
      for (int64_t d = 0; d < 16; ++d) {
        got_nan &= std::isnan(ob[size_t((h * 4 + i) * 16 + d)]);
        finite &= std::isfinite(ob[size_t((h * 4 + i) * 16 + d)]);
      }
      CHECK(want_nan ? got_nan : finite, "head %lld row %lld nan %d", (long long)h, (long long)i, int(got_nan));
    }
  // Empty rows: a KV range that starts after the row's position.
  qb.assign(qb.size(), 0.5f);
  vb.assign(vb.size(), 0.25f);
  int64_t s[1] = {6}, e[1] = {8};
  opt.kv_start = s, opt.kv_end = e;  // positions 4..7: rows 0, 1 see nothing
  CHECK(flash_attention_cpu(q, k, v, o, opt, nullptr, nullptr) == Status::kOk, "empty call");
  CHECK(ob[0] == 0.f && lse[0] == -INFINITY, "empty row gives %g, lse %g", ob[0], lse[0]);
  CHECK(std::fabs(ob[16 * 3] - 0.25f) < 1e-6f, "row 3 = %g", ob[16 * 3]);
}

void test_blasst() {
  // A huge score on the first key makes every later tile negligible.
  std::vector<float> qb, kb, vb, ob, ob2;
  const int64_t L = 512, D = 32;
  AttnTensor q = make(qb, 1, 1, L, D), k = make(kb, 1, 1, L, D), v = make(vb, 1, 1, L, D), o = make(ob, 1, 1, L, D);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (float& x : kb) x = u(rng);
  for (float& x : vb) x = u(rng);
  for (int64_t d = 0; d < D; ++d) kb[size_t(d)] = 3.f;  // key 0 dominates every row
  AttnOptions opt;
  opt.blasst_log_lambda = std::log(1e-3f);
  AttnStats st;
  CHECK(flash_attention_cpu(q, k, v, o, opt, nullptr, &st) == Status::kOk, "blasst call");
  CHECK(st.tiles_skipped > 0 && st.tiles_computed > 0, "skipped %lld of %lld", (long long)st.tiles_skipped,
        (long long)(st.tiles_computed + st.tiles_skipped));
  AttnTensor o2 = make(ob2, 1, 1, L, D);
  AttnOptions dense;
  AttnStats st2;
  CHECK(flash_attention_cpu(q, k, v, o2, dense, nullptr, &st2) == Status::kOk, "dense call");
  double worst = 0;
  for (size_t i = 0; i < ob.size(); ++i) worst = std::max(worst, double(std::fabs(ob[i] - ob2[i])));
  CHECK(worst < 1e-3, "BLASST error %g", worst);
  // log lambda = -inf is the dense kernel, bit for bit.
  opt.blasst_log_lambda = -INFINITY;
  CHECK(flash_attention_cpu(q, k, v, o, opt, nullptr, &st) == Status::kOk && st.tiles_skipped == 0, "lambda 0");
  CHECK(memcmp(ob.data(), ob2.data(), ob.size() * sizeof(float)) == 0, "lambda 0 differs from dense");
}

void test_bad_input() {
  std::vector<float> qb, kb, vb, ob;
  AttnTensor q = make(qb, 1, 4, 8, 16), k = make(kb, 1, 2, 8, 16), v = make(vb, 1, 2, 8, 16), o = make(ob, 1, 4, 8, 16);
  AttnOptions opt;
  auto st = [&](AttnTensor qq, AttnTensor kk, const AttnOptions& op, const AttnBlockMask* m) {
    return flash_attention_cpu(qq, kk, v, o, op, m, nullptr);
  };
  AttnTensor k3 = k;
  k3.heads = 3;  // 4 q heads are not a multiple of 3 KV heads (v differs too)
  CHECK(st(q, k3, opt, nullptr) == Status::kInvalidArgument, "heads");
  AttnTensor qd = q;
  qd.dim = 600;
  CHECK(st(qd, k, opt, nullptr) == Status::kInvalidArgument, "dim");
  AttnTensor ql = q;
  ql.len = 9;  // causal with Lq > Lk (out has 8 rows too: any mismatch is invalid)
  CHECK(st(ql, k, opt, nullptr) == Status::kInvalidArgument, "lq > lk");
  AttnOptions w = opt;
  w.window = -1;
  CHECK(st(q, k, w, nullptr) == Status::kInvalidArgument, "window");
  w = opt, w.causal = false, w.window = 4;
  CHECK(st(q, k, w, nullptr) == Status::kInvalidArgument, "window without causal");
  w = opt, w.softcap = NAN;
  CHECK(st(q, k, w, nullptr) == Status::kInvalidArgument, "softcap");
  int64_t s[1] = {5}, e[1] = {9};
  w = opt, w.kv_start = s, w.kv_end = e;
  CHECK(st(q, k, w, nullptr) == Status::kInvalidArgument, "kv range");
  // Masks: out-of-range and unsorted block indices, bad row pointers, wrong sizes.
  int64_t rp[2] = {0, 2};
  int32_t ci[2] = {0, 1};
  AttnBlockMask m;
  m.block_q = 16, m.block_k = 16, m.q_blocks = 1, m.k_blocks = 1, m.row_ptr = rp, m.col_idx = ci, m.nnz = 2;
  CHECK(st(q, k, opt, &m) == Status::kInvalidIndex, "two blocks of one");
  m.k_blocks = 2;
  CHECK(st(q, k, opt, &m) == Status::kInvalidArgument, "k_blocks does not match Lk");
  rp[1] = 1, m.nnz = 1, m.k_blocks = 1, ci[0] = 1;
  CHECK(st(q, k, opt, &m) == Status::kInvalidIndex, "block index out of range");
  ci[0] = -1;
  CHECK(st(q, k, opt, &m) == Status::kInvalidIndex, "negative block index");
  ci[0] = 0;
  m.block_k = 8;
  CHECK(st(q, k, opt, &m) == Status::kInvalidArgument, "block size not a multiple of 16");
  m.block_k = 16, m.heads = 3;
  CHECK(st(q, k, opt, &m) == Status::kInvalidArgument, "mask heads");
  m.heads = 1;
  CHECK(st(q, k, opt, &m) == Status::kOk, "valid mask");
  std::vector<float> kb2;
  AttnTensor k2 = make(kb2, 1, 2, 40, 16);  // 3 blocks of 16
  std::vector<float> vb2;
  AttnTensor v2 = make(vb2, 1, 2, 40, 16);
  int64_t rp2[2] = {0, 2};
  int32_t ci2[2] = {2, 1};
  AttnBlockMask m2;
  m2.block_q = 16, m2.block_k = 16, m2.q_blocks = 1, m2.k_blocks = 3, m2.row_ptr = rp2, m2.col_idx = ci2, m2.nnz = 2;
  CHECK(flash_attention_cpu(q, k2, v2, o, opt, &m2, nullptr) == Status::kInvalidIndex, "unsorted blocks");
}

// Quest page scores against float64: every dtype pair, GQA, Lq > 1, a head
// dim with a vector tail, pages past one task, HF's interleaved q layout.
void test_quest(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  struct QCase { int64_t hq, hkv, lq, d, pages; };
  for (const QCase& c : {QCase{4, 4, 1, 64, 3}, QCase{9, 3, 1, 20, 300}, QCase{8, 2, 3, 128, 257}})
    for (DType qt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16})
      for (DType bt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
        Tensor4 q(2, c.hq, c.lq, c.d, qt, true), lo(2, c.hkv, c.pages, c.d, bt, false), hi(2, c.hkv, c.pages, c.d, bt, false);
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t h = 0; h < c.hq; ++h)
            for (int64_t l = 0; l < c.lq; ++l)
              for (int64_t d = 0; d < c.d; ++d) q.set(b, h, l, d, u(rng));
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t h = 0; h < c.hkv; ++h)
            for (int64_t p = 0; p < c.pages; ++p)
              for (int64_t d = 0; d < c.d; ++d) {
                const float a = u(rng);
                lo.set(b, h, p, d, a);
                hi.set(b, h, p, d, a + std::fabs(u(rng)));
              }
        std::vector<float> got(size_t(2 * c.hkv * c.pages), 0.f);
        CHECK(quest_page_scores_cpu(q.view(), lo.view(), hi.view(), got.data()) == Status::kOk, "quest status");
        double worst = 0;
        const int64_t group = c.hq / c.hkv;
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t h = 0; h < c.hkv; ++h)
            for (int64_t p = 0; p < c.pages; ++p) {
              double best = -INFINITY;
              for (int64_t g = 0; g < group * c.lq; ++g) {
                double sum = 0;
                for (int64_t d = 0; d < c.d; ++d) {
                  const double x = q.at(b, h * group + g / c.lq, g % c.lq, d);
                  sum += std::max(x * lo.at(b, h, p, d), x * hi.at(b, h, p, d));
                }
                best = std::max(best, sum);
              }
              worst = std::max(worst, std::fabs(best - got[size_t((b * c.hkv + h) * c.pages + p)]));
            }
        CHECK(worst < 1e-4 * c.d, "quest hq=%lld d=%lld pages=%lld: error %g", (long long)c.hq, (long long)c.d,
              (long long)c.pages, worst);
      }
  std::vector<float> qb, lb;
  AttnTensor q = make(qb, 1, 4, 1, 16), b3 = make(lb, 1, 3, 5, 16);
  float out[15];
  CHECK(quest_page_scores_cpu(q, b3, b3, out) == Status::kInvalidArgument, "quest: 4 q heads over 3 KV heads");
  AttnTensor b2 = b3;
  b2.heads = 2, b2.dim = 8;
  CHECK(quest_page_scores_cpu(q, b2, b2, out) == Status::kInvalidArgument, "quest: head dims differ");
  b2.dim = 16;
  CHECK(quest_page_scores_cpu(q, b2, b2, nullptr) == Status::kInvalidArgument, "quest: null scores");
}

}  // namespace

int main() {
  std::mt19937 rng(11);
  const int paths = on_every_isa([&](CpuIsa) {
    test_cases(rng, false);
    test_quest(rng);
  });
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    if (!cpu_isa_set(isa)) continue;
    cpu_set_num_threads(4);  // split-KV needs several threads
    test_cases(rng, true);
    test_nonfinite_and_empty();
    test_blasst();
  }
  cpu_set_num_threads(0);
  test_bad_input();
  CHECK(paths >= 1, "no ISA path ran");
  return finish("test_attention_cpu");
}
