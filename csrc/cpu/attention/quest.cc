// CPU entry point of Quest page scoring: argument checks, the task grid
// (batch x KV head x runs of pages), ISA dispatch and threading. Baseline TU.
#include <algorithm>

#include "../common/dense_pack.h"
#include "../common/isa_pick.h"
#include "../common/run_parts.h"
#include "../thread_pool.h"
#include "attention_isa.h"
#include "sparsecore/attention.h"
#include "sparsecore/cpu_isa.h"

namespace sparsecore {
namespace {

using QuestFn = void (*)(const AttnTensor&, const AttnTensor&, const AttnTensor&, int64_t, int64_t, int64_t, int64_t,
                         float*, float*);

// Pages per task: 256 pages of bf16 bounds at D = 128 are 128 KiB, enough to
// amortise the task's q setup while giving two threads work at 4k keys.
constexpr int64_t kPagesPerTask = 256;

bool shape_ok(const AttnTensor& t) {
  if (t.batch < 0 || t.heads < 0 || t.len < 0 || t.dim < 1 || t.dim > kAttnMaxDim) return false;
  if (t.stride_b < 0 || t.stride_h < 0 || t.stride_l < 0) return false;
  return t.batch * t.heads * t.len == 0 || t.data != nullptr;
}

}  // namespace

Status quest_page_scores_cpu(const AttnTensor& q, const AttnTensor& kmin, const AttnTensor& kmax, float* scores) {
  return cpu::guarded([&]() -> Status {
    if (!shape_ok(q) || !shape_ok(kmin) || !shape_ok(kmax)) return Status::kInvalidArgument;
    if (kmin.batch != q.batch || kmax.batch != q.batch || kmin.heads != kmax.heads || kmin.len != kmax.len ||
        kmin.dim != q.dim || kmax.dim != q.dim || kmin.dtype != kmax.dtype)
      return Status::kInvalidArgument;
    if (q.heads > 0 && (kmin.heads == 0 || q.heads % kmin.heads != 0)) return Status::kInvalidArgument;
    const int64_t pages = kmin.len, heads = kmin.heads;
    if (q.batch * heads * pages == 0) return Status::kOk;
    if (scores == nullptr) return Status::kInvalidArgument;
    if (q.heads == 0 || q.len == 0) {
      std::fill(scores, scores + q.batch * heads * pages, -__builtin_inff());  // no row: nothing bounds a page
      return Status::kOk;
    }
    const QuestFn fn = cpu::pick<QuestFn>(&cpu::scalar::quest_scores, SC_AVX2(quest_scores), SC_AVX512(quest_scores),
                                          SC_SIMDE(quest_scores));
    const int64_t runs = (pages + kPagesPerTask - 1) / kPagesPerTask, tasks = q.batch * heads * runs;
    const int64_t rows = q.heads / heads * q.len, scratch = cpu::quest_scratch_floats(rows, q.dim);
    return cpu::run_parts(tasks, tasks > 1 && cpu_num_threads() > 1, [&](int64_t t) {
      const int64_t bh = t / runs, p0 = t % runs * kPagesPerTask, p1 = std::min(pages, p0 + kPagesPerTask);
      fn(q, kmin, kmax, bh / heads, bh % heads, p0, p1, cpu::thread_scratch(scratch), scores + bh * pages);
      return true;
    });
  });
}

}  // namespace sparsecore
