#include "backends/cuda/timing_cache.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kiln::cuda {

using nlohmann::json;

std::string TimingKey::to_string() const {
  return fmt::format("gpu={}|cc={}|lib={}|kernel={}|precision={}|dtypes={}|m={}|n={}|k={}|batch={}|layout={}|epilogue={}",
                     gpu, cc, library, kernel, precision, dtypes, m, n, k, batch, layout, epilogue);
}

std::string TimingCache::load(const std::string& path) {
  std::map<std::string, TimingEntry> loaded;
  auto reset = [&](const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
    return fmt::format("timing cache '{}' ignored ({}); starting with an empty cache", path, why);
  };
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
    return "";
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return reset("cannot be opened");
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return reset("read error");
  json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return reset("not valid JSON");
  const auto fmt_it = j.find("format");
  if (fmt_it == j.end() || !fmt_it->is_string() || fmt_it->get<std::string>() != kFormat)
    return reset(fmt::format("not a {} file", kFormat));
  const auto ver = j.find("version");
  if (ver == j.end() || !ver->is_number_integer()) return reset("no version");
  if (ver->get<int64_t>() != kVersion)
    return reset(fmt::format("version {}, this build reads version {}", ver->get<int64_t>(), kVersion));
  const auto entries = j.find("entries");
  if (entries == j.end() || !entries->is_object()) return reset("no entries object");
  for (const auto& [key, e] : entries->items()) {
    if (!e.is_object()) return reset(fmt::format("entry '{}' is not an object", key));
    const auto tactic = e.find("tactic"), ms = e.find("ms"), data = e.find("data");
    if (tactic == e.end() || !tactic->is_string() || ms == e.end() || !ms->is_number() || data == e.end() ||
        !data->is_array())
      return reset(fmt::format("entry '{}' lacks tactic/ms/data", key));
    TimingEntry te;
    te.tactic = tactic->get<std::string>();
    te.ms = ms->get<double>();
    for (const auto& v : *data) {
      if (!v.is_number_integer()) return reset(fmt::format("entry '{}' has non-integer data", key));
      te.data.push_back(v.get<int64_t>());
    }
    loaded.emplace(key, std::move(te));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  entries_ = std::move(loaded);
  return "";
}

Status TimingCache::save(const std::string& path) const {
  json entries = json::object();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [key, e] : entries_) entries[key] = {{"tactic", e.tactic}, {"ms", e.ms}, {"data", e.data}};
  }
  const json j = {{"format", kFormat}, {"version", kVersion}, {"entries", std::move(entries)}};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status(StatusCode::kIoError, fmt::format("cannot write timing cache '{}'", tmp));
    out << j.dump(1) << "\n";
    out.close();
    if (!out) return Status(StatusCode::kIoError, fmt::format("error writing timing cache '{}'", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return Status(StatusCode::kIoError, fmt::format("cannot replace timing cache '{}'", path));
  }
  return Status::ok();
}

std::optional<TimingEntry> TimingCache::lookup(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void TimingCache::store(const std::string& key, TimingEntry entry) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_[key] = std::move(entry);
}

size_t TimingCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

}  // namespace kiln::cuda
