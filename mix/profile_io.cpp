#include "mix/profile_io.h"

#include <simdjson.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "formats/atomic_file.h"
#include "formats/error.h"
#include "verify/sweep_cache.h"

namespace smolq {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// 17 significant digits: every double prints to a string that parses back to the same bits,
// so a reloaded profile predicts exactly what the fresh one did (same plan, same file).
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string checks_json(const std::vector<ProfileCheck>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i)
    o += std::string(i ? ", " : "") + "{\"what\": " + json_quote(v[i].what) + ", \"predicted\": " + num(v[i].predicted) +
         ", \"measured\": " + num(v[i].measured) + "}";
  return o + "]";
}

// Typed access to one JSON object with errors naming the file and the field.
class Fields {
 public:
  Fields(object o, const std::string& path, std::string where) : o_(o), path_(path), where_(std::move(where)) {}
  element need(const char* k) const {
    element e;
    if (o_[k].get(e) != simdjson::SUCCESS) fail(std::string("missing field '") + k + "'");
    return e;
  }
  double f64(const char* k) const { return as_f64(need(k), k); }
  double as_f64(element e, const char* k) const {
    double d;
    int64_t i;
    uint64_t u;
    if (e.get(d) == simdjson::SUCCESS) return d;
    if (e.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
    if (e.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
    fail(std::string("field '") + k + "' is not a number");
  }
  int64_t i64(const char* k) const {
    int64_t i;
    if (need(k).get(i) != simdjson::SUCCESS) fail(std::string("field '") + k + "' is not an integer");
    return i;
  }
  std::string str(const char* k) const {
    std::string_view s;
    if (need(k).get(s) != simdjson::SUCCESS) fail(std::string("field '") + k + "' is not a string");
    return std::string(s);
  }
  uint64_t hex(const char* k) const {
    const std::string s = str(k);
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 16);
    if (s.size() != 16 || *end) fail(std::string("field '") + k + "' is not 16 hex digits");
    return v;
  }
  array arr(const char* k) const {
    array a;
    if (need(k).get(a) != simdjson::SUCCESS) fail(std::string("field '") + k + "' is not an array");
    return a;
  }
  object obj(const char* k) const {
    object o;
    if (need(k).get(o) != simdjson::SUCCESS) fail(std::string("field '") + k + "' is not an object");
    return o;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(path_, "not a valid smolq profile: " + where_ + what);
  }
  const std::string& path() const { return path_; }

 private:
  object o_;
  const std::string& path_;
  std::string where_;
};

// The self-checks: a list of {what, predicted, measured}.
std::vector<ProfileCheck> read_checks(const Fields& f, const char* key) {
  std::vector<ProfileCheck> v;
  for (element e : f.arr(key)) {
    object o;
    if (e.get(o) != simdjson::SUCCESS) f.fail(std::string(key) + " entry is not an object");
    Fields c(o, f.path(), std::string(key) + ": ");
    v.push_back({c.str("what"), c.f64("predicted"), c.f64("measured")});
  }
  return v;
}

}  // namespace

std::string profile_to_json(const SensitivityProfile& p) {
  std::ostringstream o;
  o << "{\"format\": \"" << kProfileFormat << "\", \"version\": " << SensitivityProfile::kVersion << ",\n";
  o << " \"model_fp\": \"" << hex64(p.model_fp) << "\", \"calib_fp\": \"" << hex64(p.calib_fp)
    << "\", \"imatrix_fp\": \"" << hex64(p.imatrix_fp) << "\", \"settings_fp\": \"" << hex64(p.settings_fp) << "\",\n";
  o << " \"model\": " << json_quote(p.model_desc) << ", \"calibration\": " << json_quote(p.calib_desc) << ",\n";
  o << " \"settings\": {\"n_ctx\": " << p.settings.n_ctx << ", \"n_chunks\": " << p.settings.n_chunks
    << ", \"max_group_passes\": " << p.settings.max_group_passes << ", \"n_validate\": " << p.settings.n_validate
    << "},\n";
  o << " \"has_imatrix\": " << (p.has_imatrix ? "true" : "false") << ", \"calib_positions\": " << p.calib_positions
    << ", \"forward_passes\": " << p.forward_passes << ", \"seconds\": " << num(p.seconds)
    << ", \"threads\": " << p.threads << ",\n";
  o << " \"predictor\": {\"log_correlation\": " << num(p.log_correlation) << ", \"median_ratio\": "
    << num(p.median_ratio) << ",\n   \"single_checks\": " << checks_json(p.single_checks)
    << ",\n   \"model_checks\": " << checks_json(p.model_checks) << "},\n";
  o << " \"groups\": [";
  for (size_t g = 0; g < p.groups.size(); ++g) {
    o << (g ? ",\n  " : "\n  ") << "{\"label\": " << json_quote(p.groups[g].label) << ", \"dkld\": " << num(p.groups[g].dkld)
      << ", \"tensors\": [";
    for (size_t i = 0; i < p.groups[g].tensors.size(); ++i) o << (i ? ", " : "") << p.groups[g].tensors[i];
    o << "]}";
  }
  o << "],\n \"tensors\": [";
  for (size_t t = 0; t < p.tensors.size(); ++t) {
    const ProfileTensor& x = p.tensors[t];
    o << (t ? ",\n  " : "\n  ") << "{\"name\": " << json_quote(x.name) << ", \"rows\": " << x.rows << ", \"cols\": " << x.cols
      << ", \"group\": " << x.group << ", \"gain\": " << num(x.gain) << ", \"ref\": \""
      << type_info(x.types[x.ref]).name << "\",\n   \"types\": [";
    for (size_t k = 0; k < x.types.size(); ++k) o << (k ? ", " : "") << '"' << type_info(x.types[k]).name << '"';
    o << "],\n   \"error\": [";
    for (size_t k = 0; k < x.error.size(); ++k) o << (k ? ", " : "") << num(x.error[k]);
    o << "],\n   \"measured\": [";
    for (size_t k = 0; k < x.measured.size(); ++k) o << (k ? ", " : "") << (x.measured[k] < 0 ? "null" : num(x.measured[k]));
    o << "]}";
  }
  o << "]}\n";
  return o.str();
}

void save_profile(const std::string& path, const SensitivityProfile& p) { write_file_atomic(path, profile_to_json(p)); }

SensitivityProfile load_profile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path, "open", errno);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(text).get(root))
    throw FormatError(path, std::string("not a smolq profile (invalid JSON: ") + simdjson::error_message(err) + ")");
  object ro;
  if (root.get(ro) != simdjson::SUCCESS) throw FormatError(path, "not a smolq profile (not a JSON object)");
  Fields f(ro, path, "");
  if (f.str("format") != kProfileFormat) f.fail("format is not '" + std::string(kProfileFormat) + "'");
  if (f.i64("version") != SensitivityProfile::kVersion)
    f.fail("version " + std::to_string(f.i64("version")) + " (this smolq reads version " +
           std::to_string(SensitivityProfile::kVersion) + "; measure the profile again)");
  SensitivityProfile p;
  p.model_fp = f.hex("model_fp");
  p.calib_fp = f.hex("calib_fp");
  p.imatrix_fp = f.hex("imatrix_fp");
  p.settings_fp = f.hex("settings_fp");
  p.model_desc = f.str("model");
  p.calib_desc = f.str("calibration");
  Fields s(f.obj("settings"), path, "settings: ");
  p.settings.n_ctx = s.i64("n_ctx");
  p.settings.n_chunks = s.i64("n_chunks");
  p.settings.max_group_passes = static_cast<int>(s.i64("max_group_passes"));
  p.settings.n_validate = static_cast<int>(s.i64("n_validate"));
  bool b = false;
  if (f.need("has_imatrix").get(b) != simdjson::SUCCESS) f.fail("has_imatrix is not a boolean");
  p.has_imatrix = b;
  p.calib_positions = f.i64("calib_positions");
  p.forward_passes = static_cast<int>(f.i64("forward_passes"));
  p.seconds = f.f64("seconds");
  p.threads = static_cast<int>(f.i64("threads"));
  Fields pr(f.obj("predictor"), path, "predictor: ");
  p.log_correlation = pr.f64("log_correlation");
  p.median_ratio = pr.f64("median_ratio");
  p.single_checks = read_checks(pr, "single_checks");
  p.model_checks = read_checks(pr, "model_checks");
  for (element e : f.arr("groups")) {
    object o;
    if (e.get(o) != simdjson::SUCCESS) f.fail("a group is not an object");
    Fields g(o, path, "group: ");
    ProfileGroup grp{g.str("label"), {}, g.f64("dkld")};
    for (element i : g.arr("tensors")) {
      uint64_t u;
      if (i.get(u) != simdjson::SUCCESS) g.fail("tensor index is not an integer");
      grp.tensors.push_back(static_cast<size_t>(u));
    }
    p.groups.push_back(std::move(grp));
  }
  for (element e : f.arr("tensors")) {
    object o;
    if (e.get(o) != simdjson::SUCCESS) f.fail("a tensor is not an object");
    Fields t(o, path, "tensor: ");
    ProfileTensor x;
    x.name = t.str("name");
    Fields tn(o, path, "tensor '" + x.name + "': ");
    x.rows = static_cast<uint64_t>(tn.i64("rows"));
    x.cols = static_cast<uint64_t>(tn.i64("cols"));
    x.group = static_cast<int>(tn.i64("group"));
    x.gain = tn.f64("gain");
    for (element ty : tn.arr("types")) {
      std::string_view sv;
      const TypeGeometry* g = ty.get(sv) == simdjson::SUCCESS ? find_type(sv) : nullptr;
      if (!g) tn.fail("unknown type in 'types'");
      x.types.push_back(g->id);
    }
    for (element v : tn.arr("error")) x.error.push_back(tn.as_f64(v, "error"));
    for (element v : tn.arr("measured")) x.measured.push_back(v.is_null() ? -1.0 : tn.as_f64(v, "measured"));
    const std::string ref = tn.str("ref");
    x.ref = x.types.size();
    for (size_t k = 0; k < x.types.size(); ++k)
      if (type_info(x.types[k]).name == ref) x.ref = k;
    if (x.types.empty() || x.error.size() != x.types.size() || x.measured.size() != x.types.size() ||
        x.ref == x.types.size())
      tn.fail("types, error and measured differ in length, or ref is not one of the types");
    if (x.group < 0 || static_cast<size_t>(x.group) >= p.groups.size()) tn.fail("group index out of range");
    p.tensors.push_back(std::move(x));
  }
  for (const auto& g : p.groups)
    for (size_t i : g.tensors)
      if (i >= p.tensors.size()) f.fail("group '" + g.label + "' names tensor " + std::to_string(i) + ", out of range");
  return p;
}

}  // namespace smolq
