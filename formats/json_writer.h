// The project's one JSON writer (simdjson, our JSON library, only parses): `--json` output,
// the verify reports, cache records and sensitivity profiles. A streaming writer: commas,
// nesting and indentation are handled; keys are written with key() before a value or a
// container. Strings are always valid JSON: control characters are escaped and invalid UTF-8
// is replaced by U+FFFD. Doubles are printed with `digits` significant digits (17, the
// default, round-trips exactly); non-finite numbers become null (JSON has no NaN).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace smolq {

class JsonWriter {
 public:
  // indent: spaces per nesting level, 0 for compact output on one line.
  explicit JsonWriter(int indent = 2, int digits = 17) : indent_(indent), digits_(digits) {}

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // Inside an object: the next value's key.
  JsonWriter& key(std::string_view k);

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(uint64_t v);
  JsonWriter& value(int64_t v);
  JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(unsigned v) { return value(static_cast<uint64_t>(v)); }
  JsonWriter& value(double v) { return value(v, digits_); }
  JsonWriter& value(double v, int significant_digits);
  JsonWriter& value(bool v);
  JsonWriter& null();
  // Insert already-formatted JSON (e.g. kld_report_json) as a value.
  JsonWriter& raw(std::string_view json);

  // key + value in one call.
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  const std::string& str() const { return out_; }

  // `s` as a JSON string literal (quotes included).
  static std::string escape(std::string_view s);

 private:
  void before_value();
  void newline();
  struct Level {
    bool is_object;
    bool empty = true;
  };
  std::vector<Level> stack_;
  bool after_key_ = false;
  int indent_;
  int digits_;
  std::string out_;
};

// Same as JsonWriter::escape.
inline std::string json_quote(std::string_view s) { return JsonWriter::escape(s); }

}  // namespace smolq
