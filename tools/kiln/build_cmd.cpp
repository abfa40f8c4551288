// `kiln build`: ONNX -> engine file, like `trtexec --onnx=... --saveEngine=...`.
#include <fmt/format.h>

#include <cmath>

#include "accuracy_target.h"
#include "cli_common.h"
#include "commands.h"

namespace kiln::cli {

CLI::App* add_build_command(CLI::App& app, BuildOptions* opts) {
  CLI::App* cmd = app.add_subcommand("build", "Build an engine from an ONNX model");
  add_build_flags(cmd, &opts->build);
  cmd->add_flag("--listPasses", opts->list_passes, "List the optimization passes (names for --disablePass) and exit");
  cmd->footer(default_profile_note() +
              "\nExample: kiln build --onnx=models/mlp.onnx --saveEngine=mlp.engine "
              "--minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28");
  return cmd;
}

int run_build(const BuildOptions& opts) {
  if (opts.list_passes) {
    for (const PassInfo& p : list_passes()) fmt::print("{:<28} {}\n", p.name, p.description);
    return kExitOk;
  }
  if (opts.build.onnx.empty()) return report_error("build: --onnx is required", kExitUsage);
  if (opts.build.save_engine.empty()) {
    return report_error("build: --saveEngine is required (use `kiln run --onnx=...` to build and time without saving)",
                        kExitUsage);
  }
  Result<BuiltEngine> built =
      std::isnan(opts.build.accuracy_target) ? build_from_flags(opts.build) : build_with_accuracy_target(opts.build);
  if (!built.is_ok()) return report_error(built.status());
  fmt::print("{}", format_build_summary(built.value(), opts.build));
  return kExitOk;
}

}  // namespace kiln::cli
