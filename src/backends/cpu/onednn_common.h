// Shared by the oneDNN-based CPU kernels: one CPU engine per process and checked C-API calls.
#pragma once
#include <string>

#include <oneapi/dnnl/dnnl.h>

#include "kiln/status.h"

namespace kiln::cpu {

// Ok on dnnl_success; otherwise names the call that failed and what it was doing.
Status onednn_check(dnnl_status_t st, const char* call, const std::string& what);

// The process's oneDNN CPU engine, created on first use and never destroyed (kernels held by other
// static objects may outlive it).
Result<dnnl_engine_t> onednn_cpu_engine();

}  // namespace kiln::cpu
