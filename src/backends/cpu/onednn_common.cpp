#include "backends/cpu/onednn_common.h"

#include <fmt/format.h>

namespace kiln::cpu {

Status onednn_check(dnnl_status_t st, const char* call, const std::string& what) {
  if (st == dnnl_success) return Status::ok();
  return Status(StatusCode::kRuntimeError,
                fmt::format("oneDNN call {} failed (status {}): {}", call, static_cast<int>(st), what));
}

Result<dnnl_engine_t> onednn_cpu_engine() {
  struct Holder {
    dnnl_engine_t engine = nullptr;
    dnnl_status_t status = dnnl_engine_create(&engine, dnnl_cpu, 0);
  };
  static const Holder holder;
  Status s = onednn_check(holder.status, "dnnl_engine_create", "creating the CPU engine");
  if (!s.is_ok()) return s;
  return holder.engine;
}

}  // namespace kiln::cpu
