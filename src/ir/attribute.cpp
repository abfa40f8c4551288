#include "ir/attribute.h"

namespace kiln {
namespace {
template <class T>
Result<T> get_typed(const std::map<std::string, AttributeValue>& m, const std::string& name, const T& def,
                    const char* type_name) {
  auto it = m.find(name);
  if (it == m.end()) return def;
  if (auto* v = std::get_if<T>(&it->second)) return *v;
  return Status(StatusCode::kParseError, "attribute '" + name + "' is not of type " + type_name);
}
}  // namespace

Result<int64_t> Attributes::get_int(const std::string& name, int64_t def) const {
  return get_typed<int64_t>(values_, name, def, "int");
}
Result<float> Attributes::get_float(const std::string& name, float def) const {
  return get_typed<float>(values_, name, def, "float");
}
Result<std::string> Attributes::get_string(const std::string& name, const std::string& def) const {
  return get_typed<std::string>(values_, name, def, "string");
}
Result<std::vector<int64_t>> Attributes::get_ints(const std::string& name, const std::vector<int64_t>& def) const {
  return get_typed<std::vector<int64_t>>(values_, name, def, "ints");
}
Result<std::vector<float>> Attributes::get_floats(const std::string& name, const std::vector<float>& def) const {
  return get_typed<std::vector<float>>(values_, name, def, "floats");
}
const Tensor* Attributes::get_tensor(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return nullptr;
  return std::get_if<Tensor>(&it->second);
}

}  // namespace kiln
