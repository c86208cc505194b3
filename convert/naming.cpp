#include "convert/naming.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "convert/model_card.h"
#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : sep) + p;
  return s;
}

// Python's str.title(): a letter is upper-cased after a non-letter, lower-cased after a letter.
std::string title_case(std::string_view w) {
  std::string o;
  bool prev_letter = false;
  for (char c : w) {
    if (is_alpha(c)) {
      o += static_cast<char>(prev_letter ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
      prev_letter = true;
    } else {
      o += c;
      prev_letter = false;
    }
  }
  return o;
}

// Python's str.islower(): at least one letter, and no upper-case one.
bool is_lower_word(std::string_view w) {
  bool letter = false;
  for (char c : w) {
    if (std::isupper(static_cast<unsigned char>(c))) return false;
    letter = letter || is_alpha(c);
  }
  return letter;
}

// A name part's roles, as get_model_id_components annotates them.
enum Role : unsigned { kBasename = 1, kSizeLabel = 2, kFinetune = 4, kVersion = 8, kType = 16 };

const std::regex kVersionRe(R"((v|iter)?\d+([.]\d+)*)", std::regex::icase);
const std::regex kTypeRe(R"(i?q\d(_\w)*|b?fp?(16|32))", std::regex::icase);
const std::regex kSizeRe(R"((([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))", std::regex::icase);
const std::regex kFinetuneRe(R"(chat|instruct|vision|lora)", std::regex::icase);
const std::regex kTitleSkipRe(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
const std::regex kHfUrlRe(R"(https?://huggingface.co/([^/]+/[^/]+))");

// A size part ("135M", "7b1", "8x7B") normalised; may turn into a context-length finetune
// ("32k" of a 7B model) when far from the parameter count.
void annotate_size(std::string& part, unsigned& role, int64_t total_params) {
  std::replace(part.begin(), part.end(), '_', '.');
  if (is_digit(part.back()) && part.size() >= 2)  // bloom's "7b1" -> "7.1b"
    part = part.substr(0, part.size() - 2) + "." + part.back() + part[part.size() - 2];
  if (part.size() > 1 && is_digit(part[part.size() - 2]) && std::string_view("kmbt").find(part.back()) != std::string_view::npos)
    part.back() = static_cast<char>(std::toupper(static_cast<unsigned char>(part.back())));
  if (total_params != 0) {
    // float(part[:-1]) * 1000 ** " KMBT".find(part[-1]); a lower-case suffix is not found (-1).
    const std::string num = part.substr(0, part.size() - 1);
    char* end = nullptr;
    const double v = num.empty() ? 0 : std::strtod(num.c_str(), &end);
    // Python's float() takes no hex ("8x7" and "0x7" are not numbers): strtod would.
    const bool parsed = !num.empty() && end == num.c_str() + num.size() && num.find_first_of("xX") == std::string::npos &&
                        !std::isspace(static_cast<unsigned char>(num[0]));
    if (parsed) {
      const int power = static_cast<int>(std::string_view(" KMBT").find(part.back()));
      const double label_params = v * std::pow(1000.0, power == static_cast<int>(std::string_view::npos) ? -1 : power);
      const bool far = total_params < 0 ? label_params < static_cast<double>(std::llabs(total_params) / 8)
                                        : std::abs(label_params - static_cast<double>(total_params)) >
                                              static_cast<double>(7 * total_params / 8);
      if (far) {
        role |= kFinetune;
        part.back() = static_cast<char>(std::tolower(static_cast<unsigned char>(part.back())));
      }
    }
  }
  if (role == 0) role |= kSizeLabel;
}

// A base model or dataset named in the model card: an id, a URL, or a mapping used as is.
MetaEntry card_entry(const MetaTree& v, int64_t total_params) {
  MetaEntry e;
  if (v.is_map()) {
    for (const auto& [k, x] : v.fields)
      if (x.is_scalar()) e.emplace_back(k, x.scalar);
    return e;
  }
  if (!v.is_scalar()) return e;  // llama.cpp logs and records an empty entry
  const std::string& id = v.scalar;
  if (id.rfind("http://", 0) == 0 || id.rfind("https://", 0) == 0 || id.rfind("ssh://", 0) == 0) {
    e.emplace_back("repo_url", id);
    std::smatch m;
    if (id.find("huggingface.co") != std::string::npos && std::regex_match(id, m, kHfUrlRe)) {
      const ModelIdParts p = split_model_id(m[1].str(), total_params);
      if (p.full_name) e.emplace_back("name", id_to_title(*p.full_name));
      if (p.organization) e.emplace_back("organization", id_to_title(*p.organization));
      if (p.version) e.emplace_back("version", *p.version);
    }
    return e;
  }
  const ModelIdParts p = split_model_id(id, total_params);
  if (p.full_name) e.emplace_back("name", id_to_title(*p.full_name));
  if (p.organization) e.emplace_back("organization", id_to_title(*p.organization));
  if (p.version) e.emplace_back("version", *p.version);
  if (p.organization && p.full_name) e.emplace_back("repo_url", "https://huggingface.co/" + *p.organization + "/" + *p.full_name);
  return e;
}

// base_model / datasets: the first present of `keys` (a string or a list of entries).
void card_entries(const MetaTree& card, std::initializer_list<const char*> keys, int64_t total_params,
                  std::optional<std::vector<MetaEntry>>& out) {
  const MetaTree* v = nullptr;
  for (const char* k : keys)
    if ((v = card.get(k))) break;
  if (!v) return;
  if (!out) out.emplace();
  if (v->is_scalar()) out->push_back(card_entry(*v, total_params));
  if (v->is_list())
    for (const auto& item : v->items) out->push_back(card_entry(item, total_params));
}

// tags / languages: appended from each key (a string or a list of strings).
void card_list(const MetaTree& card, const char* key, std::optional<std::vector<std::string>>& out) {
  const MetaTree* v = card.get(key);
  if (!v || v->is_null()) return;
  if (!out) out.emplace();
  if (v->is_scalar()) out->push_back(v->scalar);
  if (v->is_list())
    for (const auto& item : v->items)
      if (item.is_scalar()) out->push_back(item.scalar);
}

// general.sampling.* from generation_config.json or the override: key, JSON field, type.
struct SamplingKey {
  const char* gguf_key;
  const char* config_field;
  GgufType type;
};
constexpr SamplingKey kSampling[] = {
    {"general.sampling.sequence", "sequence", GgufType::STRING},
    {"general.sampling.top_k", "top_k", GgufType::INT32},
    {"general.sampling.top_p", "top_p", GgufType::FLOAT32},
    {"general.sampling.min_p", "min_p", GgufType::FLOAT32},
    {"general.sampling.xtc_probability", "xtc_probability", GgufType::FLOAT32},
    {"general.sampling.xtc_threshold", "xtc_threshold", GgufType::FLOAT32},
    {"general.sampling.temp", "temperature", GgufType::FLOAT32},
    {"general.sampling.penalty_last_n", "penalty_last_n", GgufType::INT32},
    {"general.sampling.penalty_repeat", "penalty_repeat", GgufType::FLOAT32},
    {"general.sampling.mirostat", "mirostat", GgufType::INT32},
    {"general.sampling.mirostat_tau", "mirostat_tau", GgufType::FLOAT32},
    {"general.sampling.mirostat_eta", "mirostat_eta", GgufType::FLOAT32},
};

GgufValue sampling_value(const SamplingKey& k, const std::string& text, const std::string& path) {
  try {
    if (k.type == GgufType::STRING) return GgufValue::str(text);
    if (k.type == GgufType::INT32) return GgufValue::i32(static_cast<int32_t>(std::stol(text)));
    return GgufValue::f32(std::stof(text));
  } catch (const std::exception&) {
    throw FormatError(path, std::string(k.config_field) + ": expected a number, got '" + text + "'");
  }
}

// The text fields the model card fills, in llama.cpp's order: (metadata field, card key).
constexpr std::pair<const char*, const char*> kCardText[] = {
    {"name", "name"}, {"author", "author"}, {"version", "version"}, {"organization", "organization"},
    {"description", "description"}, {"finetune", "finetune"}, {"basename", "basename"}, {"size_label", "size_label"},
    {"source_url", "url"}, {"source_doi", "doi"}, {"source_uuid", "uuid"}, {"source_repo_url", "repo_url"},
    {"name", "model_name"}, {"author", "model_author"}, {"version", "model_version"},
    {"organization", "model_organization"}, {"description", "model_description"}, {"finetune", "model_finetune"},
    {"basename", "model_basename"}, {"size_label", "model_size_label"}, {"source_url", "model_url"},
    {"source_doi", "model_doi"}, {"source_uuid", "model_uuid"}, {"source_repo_url", "model_repo_url"},
    {"author", "model_creator"}, {"basename", "model_type"},
};

// The override file's text keys (general.license is not among them in llama.cpp either).
constexpr std::pair<const char*, const char*> kOverrideText[] = {
    {"name", "general.name"}, {"author", "general.author"}, {"version", "general.version"},
    {"organization", "general.organization"}, {"finetune", "general.finetune"}, {"basename", "general.basename"},
    {"description", "general.description"}, {"quantized_by", "general.quantized_by"},
    {"size_label", "general.size_label"}, {"license_name", "general.license.name"},
    {"license_link", "general.license.link"}, {"url", "general.url"}, {"doi", "general.doi"}, {"uuid", "general.uuid"},
    {"repo_url", "general.repo_url"}, {"source_url", "general.source.url"}, {"source_doi", "general.source.doi"},
    {"source_uuid", "general.source.uuid"}, {"source_repo_url", "general.source.repo_url"},
};

void apply_card(ModelMetadata& m, const MetaTree& card, int64_t total_params) {
  for (const auto& [field, key] : kCardText) {
    const MetaTree* v = card.get(key);
    if (v && v->is_scalar() && !m.text.count(field)) m.text[field] = v->scalar;
  }
  if (card.get("base_model") || card.get("base_models") || card.get("base_model_sources"))
    card_entries(card, {"base_model", "base_models", "base_model_sources"}, total_params, m.base_models);
  if (card.get("datasets") || card.get("dataset") || card.get("dataset_sources"))
    card_entries(card, {"datasets", "dataset", "dataset_sources"}, total_params, m.datasets);
  if (const MetaTree* lic = card.get("license"); lic && !m.text.count("license")) {
    // A list of licenses is written comma-separated.
    if (lic->is_scalar()) m.text["license"] = lic->scalar;
    if (lic->is_list()) {
      std::vector<std::string> v;
      for (const auto& x : lic->items)
        if (x.is_scalar()) v.push_back(x.scalar);
      m.text["license"] = join(v, ",");
    }
  }
  for (const char* k : {"license_name", "license_link"})
    if (const MetaTree* v = card.get(k); v && v->is_scalar() && !m.text.count(k)) m.text[k] = v->scalar;
  card_list(card, "tags", m.tags);
  card_list(card, "pipeline_tag", m.tags);
  card_list(card, "languages", m.languages);
  card_list(card, "language", m.languages);
}

// Fields an id fills when still unset (the `_name_or_path` and folder-name steps).
void apply_id(ModelMetadata& m, const std::string& id, int64_t total_params) {
  const ModelIdParts p = split_model_id(id, total_params);
  auto fill = [&](const char* field, const std::optional<std::string>& v) {
    if (v && !m.text.count(field)) m.text[field] = *v;
  };
  if (p.full_name) fill("name", id_to_title(*p.full_name));
  if (p.organization) fill("organization", id_to_title(*p.organization));
  fill("basename", p.basename);
  fill("finetune", p.finetune);
  fill("version", p.version);
  fill("size_label", p.size_label);
}

std::vector<MetaEntry> override_entries(const MetaTree& v) {
  std::vector<MetaEntry> out;
  for (const auto& item : v.items) {
    MetaEntry e;
    for (const auto& [k, x] : item.fields)
      if (x.is_scalar()) e.emplace_back(k, x.scalar);
    out.push_back(std::move(e));
  }
  return out;
}

void apply_override(ModelMetadata& m, const std::string& path) {
  const MetaTree o = read_json_tree(path);
  if (!o.is_map()) throw FormatError(path, "expected a JSON object of general.* keys");
  for (const auto& k : kSampling)
    if (const MetaTree* v = o.get(k.gguf_key); v && v->is_scalar()) m.sampling[k.gguf_key] = sampling_value(k, v->scalar, path);
  for (const auto& [field, key] : kOverrideText)
    if (const MetaTree* v = o.get(key); v && v->is_scalar()) m.text[field] = v->scalar;
  for (const auto& [key, dst] : {std::pair{"general.base_models", &m.base_models}, std::pair{"general.datasets", &m.datasets}})
    if (const MetaTree* v = o.get(key)) {
      if (!v->is_list()) throw FormatError(path, std::string(key) + ": expected a list of objects");
      *dst = override_entries(*v);
    }
  for (const auto& [key, dst] : {std::pair{"general.tags", &m.tags}, std::pair{"general.languages", &m.languages}})
    if (const MetaTree* v = o.get(key)) {
      if (!v->is_list()) throw FormatError(path, std::string(key) + ": expected a list of strings");
      dst->emplace();
      for (const auto& x : v->items) (*dst)->push_back(x.scalar);
    }
}

}  // namespace

const std::string* ModelMetadata::field(const std::string& k) const {
  auto it = text.find(k);
  return it == text.end() ? nullptr : &it->second;
}

std::string ModelMetadata::field_or(const std::string& k, const std::string& fallback) const {
  const std::string* v = field(k);
  return v ? *v : fallback;
}

std::string id_to_title(std::string_view id) {
  std::string s(id);
  std::replace(s.begin(), s.end(), '-', ' ');
  std::vector<std::string> words;
  std::string w;
  for (char c : s + " ") {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!w.empty()) words.push_back(is_lower_word(w) && !std::regex_match(w, kTitleSkipRe) ? title_case(w) : w);
      w.clear();
    } else {
      w += c;
    }
  }
  return join(words, " ");
}

ModelIdParts split_model_id(std::string_view model_id, int64_t total_params) {
  ModelIdParts r;
  const std::string id(model_id);
  if (id.find(' ') != std::string::npos) {  // a sentence, not an id
    r.full_name = id;
    return r;
  }
  const size_t slash = id.find('/');
  std::string name = slash == std::string::npos ? id : id.substr(slash + 1);
  if (slash != std::string::npos && slash > 0 && id[0] != '.') r.organization = id.substr(0, slash);
  r.full_name = name;

  std::vector<std::string> parts;
  for (size_t b = 0; b <= name.size();) {
    const size_t e = std::min(name.find('-', b), name.size());
    if (e > b) parts.push_back(name.substr(b, e - b));
    b = e + 1;
  }
  std::vector<unsigned> roles(parts.size(), 0);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string& part = parts[i];
    if (std::regex_match(part, kVersionRe)) {
      roles[i] |= kVersion;
    } else if (std::regex_match(part, kTypeRe)) {
      roles[i] |= kType;
      for (auto& c : part) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else if (i > 0 && std::regex_match(part, kSizeRe)) {
      annotate_size(part, roles[i], total_params);
    } else if (i > 0 && std::regex_match(part, kFinetuneRe)) {
      roles[i] |= (total_params < 0 && part.size() == 4 && std::tolower(part[0]) == 'l') ? kType : kFinetune;
    }
  }
  // A numeric size label makes word sizes ("small") ordinary words.
  bool numeric_size = false;
  for (size_t i = 0; i < parts.size(); ++i)
    if (roles[i] & kSizeLabel) numeric_size = numeric_size || std::any_of(parts[i].begin(), parts[i].end(), is_digit);
  if (numeric_size)
    for (size_t i = 0; i < parts.size(); ++i)
      if ((roles[i] & kSizeLabel) && std::all_of(parts[i].begin(), parts[i].end(), is_alpha)) roles[i] &= ~kSizeLabel;
  // The basename: leading untyped words and versions.
  bool at_start = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (at_start && ((roles[i] == 0 && is_alpha(parts[i][0])) || (roles[i] & kVersion))) {
      roles[i] |= kBasename;
    } else {
      at_start = false;
      if (roles[i] == 0) roles[i] |= kFinetune;
    }
  }
  for (size_t i = parts.size(); i-- > 0;) {  // a trailing version is not part of the basename
    if ((roles[i] & kBasename) && roles[i] != kBasename) roles[i] &= ~kBasename;
    else break;
  }
  std::vector<std::string> base, size, fine, ver;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (roles[i] & kBasename) base.push_back(parts[i]);
    if ((roles[i] & kSizeLabel) && std::find(size.begin(), size.end(), parts[i]) == size.end()) size.push_back(parts[i]);
    if (roles[i] & kFinetune) fine.push_back(parts[i]);
    if ((roles[i] & kVersion) && !(roles[i] & kBasename)) ver.push_back(parts[i]);
  }
  auto opt = [](const std::vector<std::string>& v) { return v.empty() ? std::nullopt : std::optional(join(v, "-")); };
  r.size_label = opt(size);
  r.finetune = opt(fine);
  r.version = opt(ver);
  if (r.size_label || r.finetune || r.version) r.basename = opt(base);  // else too ambiguous
  return r;
}

std::string size_label_for(uint64_t n) {
  double v;
  char suffix;
  if (n > 1e12) { v = n * 1e-12; suffix = 'T'; }
  else if (n > 1e9) { v = n * 1e-9; suffix = 'B'; }
  else if (n > 1e6) { v = n * 1e-6; suffix = 'M'; }
  else { v = n * 1e-3; suffix = 'K'; }
  // Enough decimals for two significant digits (134.5M -> "135M", 1.71B -> "1.7B").
  const long rounded = std::lround(v);
  const int digits = rounded == 0 ? 0 : static_cast<int>(std::to_string(rounded).size());
  const int decimals = std::max(2 - digits, 0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%c", decimals, v, suffix);
  return buf;
}

ModelMetadata load_model_metadata(const std::string& hf_dir, const NamingInputs& in, uint64_t n_params) {
  const int64_t total = static_cast<int64_t>(n_params);
  ModelMetadata m;
  apply_card(m, read_model_card(hf_dir), total);
  // The model id: the repo id from the cache, else config.json's _name_or_path when it is an
  // id ("org/name"), not a path.
  std::string id = in.repo_id;
  if (id.empty() && file_exists(hf_dir + "/config.json")) {
    const MetaTree cfg = read_json_tree(hf_dir + "/config.json");  // named: get() points into it
    if (const MetaTree* n = cfg.get("_name_or_path"); n && n->is_scalar())
      if (std::count(n->scalar.begin(), n->scalar.end(), '/') <= 1) id = n->scalar;
  }
  if (!id.empty()) apply_id(m, id, total);
  // The folder's real name ("." and trailing slashes resolved).
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::weakly_canonical(std::filesystem::absolute(hf_dir), ec);
  if (ec) dir = hf_dir;
  std::string folder = dir.filename().string();
  if (folder.empty()) folder = dir.parent_path().filename().string();
  apply_id(m, folder, total);
  if (file_exists(hf_dir + "/generation_config.json")) {
    const std::string gpath = hf_dir + "/generation_config.json";
    MetaTree g;
    try {
      g = read_json_tree(gpath);
    } catch (const FormatError&) {
      // llama.cpp skips a generation_config.json it cannot parse; so does smolq.
    }
    for (const auto& k : kSampling) {
      const MetaTree* v = g.get(k.config_field);
      if (!v && std::string_view(k.config_field) == "penalty_repeat") v = g.get("repetition_penalty");
      if (v && v->is_scalar()) m.sampling[k.gguf_key] = sampling_value(k, v->scalar, gpath);
    }
  }
  if (!in.metadata_path.empty()) apply_override(m, in.metadata_path);
  if (!in.name_override.empty()) m.text["name"] = in.name_override;
  if (!m.text.count("name")) m.text["name"] = folder;
  if (!m.text.count("size_label") && n_params > 0) m.text["size_label"] = size_label_for(n_params);
  return m;
}

void write_general_metadata(const ModelMetadata& m, const std::string& arch, GgufMetadata& meta) {
  meta.set("general.architecture", GgufValue::str(arch));
  meta.set("general.type", GgufValue::str("model"));
  for (const auto& [k, v] : m.sampling) meta.set(k, v);
  constexpr std::pair<const char*, const char*> kKeys[] = {
      {"name", "general.name"}, {"author", "general.author"}, {"version", "general.version"},
      {"organization", "general.organization"}, {"finetune", "general.finetune"}, {"basename", "general.basename"},
      {"description", "general.description"}, {"quantized_by", "general.quantized_by"},
      {"size_label", "general.size_label"}, {"license", "general.license"}, {"license_name", "general.license.name"},
      {"license_link", "general.license.link"}, {"url", "general.url"}, {"doi", "general.doi"}, {"uuid", "general.uuid"},
      {"repo_url", "general.repo_url"}, {"source_url", "general.source.url"}, {"source_doi", "general.source.doi"},
      {"source_uuid", "general.source.uuid"}, {"source_repo_url", "general.source.repo_url"},
  };
  for (const auto& [field, key] : kKeys)
    if (const std::string* v = m.field(field)) meta.set(key, GgufValue::str(*v));
  constexpr const char* kEntryFields[] = {"name", "author", "version", "organization", "description",
                                          "url", "doi", "uuid", "repo_url"};
  auto entries = [&](const char* prefix, const std::optional<std::vector<MetaEntry>>& list) {
    if (!list) return;
    meta.set(std::string(prefix) + ".count", GgufValue::u32(static_cast<uint32_t>(list->size())));
    for (size_t i = 0; i < list->size(); ++i)
      for (const char* f : kEntryFields)
        for (const auto& [k, v] : (*list)[i])
          if (k == f) meta.set(std::string(prefix) + "." + std::to_string(i) + "." + f, GgufValue::str(v));
  };
  entries("general.base_model", m.base_models);
  entries("general.dataset", m.datasets);
  if (m.tags) meta.set("general.tags", GgufValue::string_array(*m.tags));
  if (m.languages) meta.set("general.languages", GgufValue::string_array(*m.languages));
}

std::string default_output_name(const GgufMetadata& meta, std::string_view encoding) {
  // Spaces become '-' as in llama.cpp; so do path separators and control characters in every
  // part (llama.cpp replaces '/' in the name only): the model card chooses these strings, and
  // the result must stay one file in the current folder.
  auto dashed = [](std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.erase(s.begin());
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    for (auto& c : s)
      if (c == ' ' || c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20) c = '-';
    return s;
  };
  const auto basename = meta.opt_string("general.basename");
  std::string name = dashed(basename ? *basename : meta.opt_string("general.name").value_or("ggml-model"));
  std::string out = name;
  if (auto s = meta.opt_string("general.size_label")) out += "-" + dashed(*s);
  if (auto f = meta.opt_string("general.finetune")) out += "-" + dashed(*f);
  if (auto v = meta.opt_string("general.version")) out += "-" + dashed(*v);
  std::string enc = dashed(std::string(encoding));
  for (auto& c : enc) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!enc.empty()) out += "-" + enc;
  if (out.empty() || out.front() == '.') out.insert(0, "model");  // never a hidden file, never ".."
  return out + ".gguf";
}

}  // namespace smolq
