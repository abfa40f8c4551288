// Node attributes as they come from ONNX, typed. Operators parse these once into their own structs.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ir/tensor.h"
#include "kiln/status.h"

namespace kiln {

using AttributeValue = std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>,
                                    std::vector<std::string>, Tensor>;

class Attributes {
 public:
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  void set(const std::string& name, AttributeValue v) { values_[name] = std::move(v); }
  void erase(const std::string& name) { values_.erase(name); }
  const std::map<std::string, AttributeValue>& all() const { return values_; }

  // Typed getters: default when absent; error when present with another type.
  Result<int64_t> get_int(const std::string& name, int64_t def) const;
  Result<float> get_float(const std::string& name, float def) const;
  Result<std::string> get_string(const std::string& name, const std::string& def) const;
  Result<std::vector<int64_t>> get_ints(const std::string& name, const std::vector<int64_t>& def) const;
  Result<std::vector<float>> get_floats(const std::string& name, const std::vector<float>& def) const;
  const Tensor* get_tensor(const std::string& name) const;

 private:
  std::map<std::string, AttributeValue> values_;
};

}  // namespace kiln
