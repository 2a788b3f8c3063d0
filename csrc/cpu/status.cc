// The per-thread failure detail of status.h. Baseline TU.
#include <cstring>

#include "sparsecore/status.h"

namespace sparsecore {
namespace {
thread_local char t_detail[256] = {0};
}

const char* error_detail() { return t_detail; }

void set_error_detail(const char* detail) {
  if (detail == nullptr) detail = "";
  std::strncpy(t_detail, detail, sizeof t_detail - 1);
  t_detail[sizeof t_detail - 1] = 0;
}

}  // namespace sparsecore
