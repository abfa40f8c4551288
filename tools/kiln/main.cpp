// kiln: build, time, evaluate, inspect and compare engines from the command line, with trtexec's flag names.
#include <fmt/format.h>

#include "cli_common.h"
#include "commands.h"
#include "kiln/runtime.h"

int main(int argc, char** argv) {
  using namespace kiln::cli;
  CLI::App app{"Kiln: ONNX optimizer and CPU runtime (trtexec-style flags, --flag=value)", "kiln"};
  app.set_version_flag("--version", std::string(kiln::version()));
  app.require_subcommand(1);

  BuildOptions build;
  RunOptions run;
  EvalOptions eval;
  InspectOptions inspect;
  CompareOptions compare;
  CLI::App* build_cmd = add_build_command(app, &build);
  CLI::App* run_cmd = add_run_command(app, &run);
  CLI::App* eval_cmd = add_eval_command(app, &eval);
  CLI::App* inspect_cmd = add_inspect_command(app, &inspect);
  CLI::App* compare_cmd = add_compare_command(app, &compare);

  // CLI11 would answer "A subcommand is required" for a misspelt one; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : {build_cmd, run_cmd, eval_cmd, inspect_cmd, compare_cmd}) known |= sub->get_name() == argv[1];
    if (!known) {
      return report_error(fmt::format("unknown command '{}' (commands: build, run, eval, inspect, compare)", argv[1]), kExitUsage);
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11's own report spans two lines; ours is one, with a pointer to the help.
    std::string what = e.what();
    while (!what.empty() && what.back() == '\n') what.pop_back();
    return report_error(fmt::format("{} (see `kiln --help` or `kiln <command> --help`)", what), kExitUsage);
  }

  if (build_cmd->parsed()) return run_build(build);
  if (run_cmd->parsed()) return run_run(run);
  if (eval_cmd->parsed()) return run_eval(eval);
  if (inspect_cmd->parsed()) return run_inspect(inspect);
  if (compare_cmd->parsed()) return run_compare(compare);
  return report_error("no command given (build, run, eval, inspect, compare)", kExitUsage);
}
