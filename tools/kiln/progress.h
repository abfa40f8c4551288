// A one-line progress bar on stderr, drawn only when stderr is a terminal so logs and pipes stay clean.
#pragma once
#include <chrono>
#include <string>

namespace kiln::cli {

class ProgressBar {
 public:
  // `enabled` defaults to isatty(stderr); tests pass it explicitly.
  explicit ProgressBar(std::string label);
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();  // clears the line if anything was drawn
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // fraction in [0,1]; redraws at most every 100 ms (cheap to call in a loop). `detail` follows the bar.
  void update(double fraction, const std::string& detail = "");
  void finish();
  bool enabled() const { return enabled_; }

  // "label [#####.....]  50% detail", `width` bar cells; exposed for tests.
  static std::string render(const std::string& label, double fraction, const std::string& detail, int width = 30);

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace kiln::cli
