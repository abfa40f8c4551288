// `kiln inspect`: what is inside an engine file — layers, kernels, shapes, where each layer came from in
// the ONNX graph, and the build settings. The data is Engine::inspect_json(); this file only lays it out,
// tolerating missing keys so an older or newer engine still prints what it has.
#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"

namespace kiln::cli {

CLI::App* add_inspect_command(CLI::App& app, InspectOptions* opts) {
  CLI::App* cmd = app.add_subcommand("inspect", "Show the layers, kernels and settings of an engine");
  cmd->add_option("--loadEngine", opts->load_engine, "Engine file to inspect")->type_name("FILE")->required();
  cmd->add_flag("--json", opts->json, "Print the full inspection document as JSON");
  return cmd;
}

namespace {

using nlohmann::json;

// The value as text: strings unquoted, missing as "-".
std::string text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "-";
  const json& v = j[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// [1,784] or "1x784" -> "1x784"; ["batch",784] -> "batchx784"
std::string shape_text(const json& shape) {
  if (shape.is_string()) return shape.get<std::string>();
  if (!shape.is_array()) return "?";
  if (shape.empty()) return "scalar";
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += "x";
    const json& d = shape[i];
    // Dynamic dims come as a symbolic name ("batch") or -1.
    if (d.is_string()) {
      out += d.get<std::string>();
    } else {
      out += d.is_number_integer() && d.get<int64_t>() < 0 ? "?" : d.dump();
    }
  }
  return out;
}

// "x:float32[1x784], w[...]"
std::string tensors_text(const json& list) {
  if (!list.is_array() || list.empty()) return "-";
  std::vector<std::string> parts;
  for (const json& t : list) {
    if (t.is_string()) {
      parts.push_back(t.get<std::string>());
      continue;
    }
    std::string s = text(t, "name");
    if (t.contains("dtype")) s += ":" + text(t, "dtype");
    if (t.contains("shape")) s += "[" + shape_text(t["shape"]) + "]";
    if (t.contains("scale") && t["scale"].is_number()) s += fmt::format(" (scale {:.6g})", t["scale"].get<double>());
    parts.push_back(std::move(s));
  }
  return join(parts, ", ");
}

std::string strings_text(const json& list) {
  if (!list.is_array() || list.empty()) return "-";
  std::vector<std::string> parts;
  for (const json& v : list) parts.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return join(parts, ", ");
}

const json& member(const json& j, const char* key) {
  static const json kNull;
  return j.is_object() && j.contains(key) ? j[key] : kNull;
}

}  // namespace

std::string format_inspection(const nlohmann::json& doc) {
  std::string out;
  out += fmt::format("Kiln {} engine for {} ({})\n", text(doc, "kiln_version"), text(doc, "device"), text(doc, "target"));

  for (const char* kind : {"inputs", "outputs"}) {
    for (const json& t : member(doc, kind).is_array() ? member(doc, kind) : json::array()) {
      // Host IO's form of the input (engine.cpp): float16 where every reader rounds it to float16 first, int8 or
      // uint8 where every reader quantizes it first with this scale.
      std::string host_form;
      if (member(t, "host_io_as").is_string()) {
        const std::string as = text(t, "host_io_as");
        host_form = as == "float16"
                        ? "  (host IO sends it as float16: every reader rounds it to float16)"
                        : fmt::format("  (host IO sends it as {}: every reader quantizes it, scale {}, zero point {})",
                                      as,
                                      member(t, "host_io_scale").is_number() ? member(t, "host_io_scale").get<double>() : 0.0,
                                      member(t, "host_io_zero_point").is_number() ? member(t, "host_io_zero_point").get<int>() : 0);
      }
      out += fmt::format("{:<7} {:<24} {:<8} {}{}\n", kind == std::string("inputs") ? "input" : "output", text(t, "name"),
                         text(t, "dtype"), shape_text(member(t, "shape")), host_form);
    }
  }
  const json& profiles = member(doc, "profiles");
  if (profiles.is_array()) {
    for (const json& p : profiles) {
      out += fmt::format("profile {:<24} min {}, opt {}, max {}\n", text(p, "input"), shape_text(member(p, "min")),
                         shape_text(member(p, "opt")), shape_text(member(p, "max")));
    }
  }

  const json& layers = member(doc, "layers");
  size_t views = 0;
  out += "\nLayers:\n";
  if (layers.is_array()) {
    int index = 0;
    for (const json& l : layers) {
      const bool view = member(l, "view").is_boolean() && l["view"].get<bool>();
      views += view;
      out += fmt::format("[{:>3}] {}  op {}  kernel {}  precision {}{}\n", index++, text(l, "name"), text(l, "op_type"),
                         text(l, "kernel"), text(l, "precision"), view ? "  (view, no copy)" : "");
      out += fmt::format("      in:  {}\n", tensors_text(member(l, "inputs")));
      out += fmt::format("      out: {}\n", tensors_text(member(l, "outputs")));
      out += fmt::format("      from ONNX: {}\n", strings_text(member(l, "origins")));
      const json& q = member(l, "int8");
      if (q.is_object()) {
        const double ys = member(q, "output_scale").is_number() ? q["output_scale"].get<double>() : 0;
        out += fmt::format("      int8: input scale {:.6g} (amax {:.4g}), weight scales {:.3g}..{:.3g} over {} channels, "
                           "output {}\n",
                           q.value("input_scale", 0.0), 127 * q.value("input_scale", 0.0), q.value("weight_scale_min", 0.0),
                           q.value("weight_scale_max", 0.0), q.value("weight_channels", 0),
                           ys > 0 ? fmt::format("int8, scale {:.6g} (amax {:.4g})", ys, 127 * ys) : "float32");
      }
      const json& attrs = member(l, "attributes");
      const json& load_tactic = member(member(member(doc, "runtime_device"), "layer_tactics"), text(l, "name").c_str());
      if (load_tactic.is_string()) out += fmt::format("      tactic (chosen at load): {}\n", load_tactic.get<std::string>());
      if (member(attrs, "kiln_tactic").is_string()) {
        const std::string tactic = attrs["kiln_tactic"].get<std::string>();
        const json& ms = member(attrs, "kiln_tactic_ms");
        if (tactic.find("; ") == std::string::npos) {
          out += fmt::format("      tactic: {}{}\n", tactic,
                             ms.is_number() ? fmt::format(" ({:.4f} ms at the opt shape)", ms.get<double>()) : "");
        } else {
          // Tuned per M band ("M=8192: <name> (ms); M=1: ..."): a band a line, each with its own time.
          out += "      tactic per M band:\n";
          for (size_t at = 0, end = 0; at < tactic.size(); at = end + 2) {
            end = std::min(tactic.find("; ", at), tactic.size());
            out += fmt::format("        {}\n", tactic.substr(at, end - at));
          }
        }
      }
    }
  }
  const size_t nlayers = layers.is_array() ? layers.size() : 0;

  out += "\nTotals:\n";
  out += fmt::format("  layers:         {} ({} views)\n", nlayers, views);
  const json& wb = member(doc, "weight_bytes");
  const json& ab = member(doc, "arena_bytes");
  out += fmt::format("  weights:        {}\n", wb.is_number_unsigned() || wb.is_number_integer()
                                                  ? format_bytes(wb.get<uint64_t>())
                                                  : std::string("-"));
  out += fmt::format("  arena:          {}\n", ab.is_number_unsigned() || ab.is_number_integer()
                                                  ? format_bytes(ab.get<uint64_t>())
                                                  : std::string("-"));
  out += fmt::format("  device:         {}\n", text(doc, "device"));
  out += fmt::format("  target:         {}\n", text(doc, "target"));
  out += fmt::format("  kiln version:   {}\n", text(doc, "kiln_version"));
  const json& flags = member(doc, "build_flags");
  if (flags.is_object() && !flags.empty()) {
    out += "  build flags:\n";
    for (const auto& [key, value] : flags.items()) {
      out += fmt::format("    {}: {}\n", key, value.is_string() ? value.get<std::string>() : value.dump());
    }
  } else {
    out += "  build flags:    -\n";
  }
  return out;
}

int run_inspect(const InspectOptions& opts) {
  Result<std::shared_ptr<Engine>> engine = load_engine_file(opts.load_engine);
  if (!engine.is_ok()) return report_error(engine.status());
  const std::string raw = engine.value()->inspect_json();
  json doc = json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return report_error("inspect: the engine's inspection document is not valid JSON (a Kiln bug)");
  if (opts.json) {
    fmt::print("{}\n", doc.dump(2));
    return kExitOk;
  }
  fmt::print("{}", format_inspection(doc));
  return kExitOk;
}

}  // namespace kiln::cli
