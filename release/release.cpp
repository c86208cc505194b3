// `smolq release` (release/release.h): the sweep in the work folder, then the release folder
// staged beside DIR and swapped in whole.
#include "release/release.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "convert/model_card.h"
#include "convert/model_source.h"
#include "convert/naming.h"
#include "formats/atomic_dir.h"
#include "formats/atomic_file.h"
#include "formats/content_hash.h"
#include "formats/error.h"
#include "formats/gguf.h"
#include "formats/interrupt.h"
#include "formats/mapped_file.h"
#include "formats/model_config.h"
#include "formats/sha256.h"
#include "inspect/estimate_file.h"
#include "release/card.h"
#include "release/recipe.h"
#include "verify/report_writers.h"
#include "verify/sweep_types.h"

namespace smolq {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSums = "SHA256SUMS";

void log(const SweepEvents& ev, const std::string& line) {
  if (ev.log) ev.log(line);
}

// The names a previous release lists in its SHA256SUMS ("<hex>  <name>" lines).
std::set<std::string> listed_in_sums(const std::string& path) {
  std::set<std::string> names;
  std::istringstream in(read_text_file(path, 1u << 20));
  for (std::string line; std::getline(in, line);) {
    const size_t sep = line.find("  ");
    if (sep == 64) names.insert(line.substr(sep + 2));
  }
  return names;
}

// Puts `src` at `dest` without copying when both are on one filesystem (a hard link: the work
// folder keeps its file for the cache, the release shares its blocks), else copies it.
void place_file(const std::string& src, const std::string& dest) {
  std::error_code ec;
  fs::create_hard_link(src, dest, ec);
  if (!ec) return;
  fs::copy_file(src, dest, fs::copy_options::overwrite_existing, ec);
  if (ec) throw IoError(dest, "cannot copy " + src + " into the release", ec.value());
}

std::string sha256_of_file(const std::string& path) {
  auto f = MappedFile::open(path);
  const ByteView v = f->view();
  return sha256_hex(std::string_view(reinterpret_cast<const char*>(v.data()), static_cast<size_t>(v.size())));
}

// "SmolLM2-135M-Instruct": the stem llama.cpp's naming gives the built files.
std::string model_name_of(const std::string& gguf) {
  auto r = GgufReader::open(gguf);
  std::string n = default_output_name(r->metadata(), "");
  return n.substr(0, n.size() - 5);  // ".gguf"
}

// "Q4_K_M@target" -> "Q4_K_M-target": a file-name part.
std::string file_label(const std::string& label) {
  std::string s = label;
  const size_t at = s.find('@');
  if (at != std::string::npos) s[at] = '-';
  return s;
}

// The full-precision file, built once into the work folder (keyed by the checkpoint, the type
// and the naming) and reused by later runs.
std::string build_full(const ReleaseOptions& o, FileType type, const SweepEvents& ev) {
  const uint64_t key = ContentHasher().add("release-full").add(fingerprint_model(o.sweep.model))
                           .add(static_cast<uint64_t>(type)).add(o.sweep.naming.repo_id).digest();
  const std::string path = o.sweep.out_dir + "/quants/full-" + hex64(key) + ".gguf";
  if (file_exists(path)) {
    log(ev, "full precision: cached " + path);
    return path;
  }
  HfBuildSettings hf;
  hf.naming = o.sweep.naming;
  hf.file_type = type;
  hf.weight_type = type == FileType::kBF16 ? GgmlType::BF16 : GgmlType::F16;
  auto src = ModelSource::open(o.sweep.model, hf);
  std::optional<QuantizeOptions> q;
  if (src->is_gguf()) {
    q.emplace();
    q->ftype = type;
    q->allow_requantize = true;
  }
  const BuildPlan plan = src->plan(q);
  const std::string stage = std::string("build ") + std::string(file_type_info(type).name);
  log(ev, stage + " -> " + path);
  src->write(plan, path, o.sweep.eval.n_threads, [&](const WriteProgress& wp) {
    if (ev.progress) ev.progress(stage, static_cast<int64_t>(wp.elements_done), static_cast<int64_t>(wp.elements_total),
                                 wp.tensor ? wp.tensor->name : "");
  });
  return path;
}

// A license id from a LICENSE file's text, for the two licenses small models mostly use.
std::string recognise_license(const std::string& dir) {
  const std::string path = dir + "/LICENSE";
  if (!file_exists(path)) return "";
  const std::string text = read_text_file(path, 1u << 20);
  if (text.find("Apache License") != std::string::npos && text.find("Version 2.0") != std::string::npos) return "apache-2.0";
  if (text.find("MIT License") != std::string::npos) return "mit";
  return "";
}

// What the checkpoint's own card (or the GGUF's general.* keys) says, and the options.
CardFacts card_facts(const ReleaseOptions& o, const SweepResult& s, const std::string& model_name) {
  CardFacts f;
  f.model_name = model_name;
  f.base_model = o.base_model;
  f.quantized_by = o.quantized_by;
  f.full_type = o.full_type;
  const std::string& m = o.sweep.model;
  if (fs::is_directory(m)) {
    const ModelMetadata meta = load_model_metadata(m, o.sweep.naming, s.n_params);
    if (const std::string* l = meta.field("license")) f.license = *l;
    if (meta.tags) f.tags = *meta.tags;
    if (meta.languages) f.languages = *meta.languages;
    const MetaTree card = read_model_card(m);
    if (const MetaTree* p = card.get("pipeline_tag"); p && p->is_scalar()) f.pipeline_tag = p->scalar;
    if (f.license.empty()) f.license = recognise_license(m);
    f.max_ctx = parse_hf_config(m + "/config.json").n_ctx_train;
  } else {
    auto r = GgufReader::open(m);
    const GgufMetadata& meta = r->metadata();
    if (auto l = meta.opt_string("general.license")) f.license = *l;
    f.max_ctx = config_from_gguf(meta, m).n_ctx_train;
  }
  if (!o.license.empty()) f.license = o.license;
  return f;
}

std::vector<ReleaseMemory> estimate_files(const std::vector<ReleaseFile>& files, const std::string& dir,
                                          const std::vector<uint64_t>& contexts) {
  std::vector<ReleaseMemory> out;
  for (const auto& f : files) {
    if (f.kind != "quant" && f.kind != "full") continue;
    auto r = GgufReader::open(dir + "/" + f.name);
    EstimateRequest req;
    req.model = f.name;
    req.shape = memory_shape(config_from_gguf(r->metadata(), r->path()), r->metadata());
    req.contexts = contexts;
    req.candidates.push_back(candidate_from_file(*r, f.name));
    const EstimateResult e = run_estimate(req);
    ReleaseMemory m;
    m.file = f.name;
    m.estimated_file_size = e.rows[0].size.file_size;
    for (const auto& me : e.rows[0].memory) m.total.push_back(me.total());
    if (m.estimated_file_size != f.size)
      throw Error("internal: the estimate of " + f.name + " says " + std::to_string(m.estimated_file_size) +
                  " bytes, the file has " + std::to_string(f.size));
    out.push_back(std::move(m));
  }
  return out;
}

void release_json(JsonWriter& j, const ReleaseResult& r) {
  j.key("release").begin_object().key("model_name").value(r.model_name).key("files").begin_array();
  for (const auto& f : r.files) {
    j.begin_object().key("name").value(f.name).key("kind").value(f.kind).key("size").value(f.size);
    j.key("sha256").value(f.sha256);
    if (f.quant) j.key("quant").value(r.sweep.quants[*f.quant].label);
    if (!f.recipe_for.empty()) j.key("recipe_for").value(f.recipe_for);
    j.end_object();
  }
  j.end_array().key("contexts").begin_array();
  for (uint64_t c : r.contexts) j.value(c);
  j.end_array().key("memory").begin_array();
  for (const auto& m : r.memory) {
    j.begin_object().key("file").value(m.file).key("estimated_file_size").value(m.estimated_file_size).key("total_bytes").begin_array();
    for (uint64_t t : m.total) j.value(t);
    j.end_array().end_object();
  }
  j.end_array().end_object();
}

ReleaseFile describe(const AtomicDir& d, const std::string& name, const std::string& kind) {
  ReleaseFile f;
  f.name = name;
  f.kind = kind;
  f.size = fs::file_size(d.file(name));
  return f;
}

// Quants, full-precision file, imatrix, recipes and license into the staging folder.
std::vector<ReleaseFile> stage_model_files(const ReleaseOptions& o, const SweepResult& s, const std::string& name,
                                           const AtomicDir& d, const SweepEvents& ev) {
  std::vector<ReleaseFile> files;
  for (size_t i = 0; i < s.quants.size(); ++i) {
    const std::string fname = name + "-" + file_label(s.quants[i].label) + ".gguf";
    place_file(s.quants[i].path, d.file(fname));
    files.push_back(describe(d, fname, "quant"));
    files.back().quant = i;
    if (s.quants[i].label.find('@') != std::string::npos) {
      const std::string rname = name + "-" + file_label(s.quants[i].label) + ".tensor-types.txt";
      write_file_atomic(d.file(rname), tensor_type_recipe(*GgufReader::open(d.file(fname))));
      files.push_back(describe(d, rname, "recipe"));
      files.back().recipe_for = fname;
    }
  }
  if (o.full_type) {
    const std::string fname = name + "-" + std::string(file_type_info(*o.full_type).name) + ".gguf";
    place_file(build_full(o, *o.full_type, ev), d.file(fname));
    files.push_back(describe(d, fname, "full"));
  }
  if (!s.imatrix_path.empty()) {
    // A given legacy imatrix (llama.cpp's .dat format) keeps its format and says so by its name.
    auto mapped = MappedFile::open(s.imatrix_path);
    const ByteView v = mapped->view();
    const bool gguf = v.size() >= 4 && std::string_view(reinterpret_cast<const char*>(v.data()), 4) == "GGUF";
    const std::string fname = name + (gguf ? ".imatrix.gguf" : ".imatrix.dat");
    place_file(s.imatrix_path, d.file(fname));
    files.push_back(describe(d, fname, "imatrix"));
  }
  if (fs::is_directory(o.sweep.model) && file_exists(o.sweep.model + "/LICENSE")) {
    fs::copy_file(o.sweep.model + "/LICENSE", d.file("LICENSE"));
    files.push_back(describe(d, "LICENSE", "license"));
  }
  return files;
}

}  // namespace

void check_release_destination(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return;
  if (fs::is_symlink(fs::symlink_status(dir, ec))) throw UsageError("--output '" + dir + "' is a symbolic link: give the folder itself");
  if (!fs::is_directory(dir, ec)) throw UsageError("--output '" + dir + "' exists and is not a folder");
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path().filename().string());
  if (entries.empty()) return;
  const std::string sums = dir + "/" + kSums;
  const std::set<std::string> listed = file_exists(sums) ? listed_in_sums(sums) : std::set<std::string>{};
  std::vector<std::string> foreign;
  for (const auto& n : entries)
    if (n != kSums && !listed.count(n)) foreign.push_back(n);
  if (!listed.empty() && foreign.empty()) return;
  std::sort(foreign.begin(), foreign.end());
  std::string list;
  for (size_t i = 0; i < foreign.size() && i < 5; ++i) list += (i ? ", " : "") + foreign[i];
  throw UsageError("--output '" + dir + "' is not empty and not a release smolq wrote (" +
                   (listed.empty() ? std::string("no SHA256SUMS") : "not in its SHA256SUMS: " + list) +
                   "): give a new or empty folder; nothing there is replaced");
}

ReleaseResult run_release(const ReleaseOptions& o, const SweepEvents& ev) {
  if (o.sweep.out_dir.empty() || o.out_dir.empty()) throw UsageError("internal: release and work folders must be set");
  check_release_destination(o.out_dir);
  AtomicDir dir(o.out_dir);
  for (const auto& n : dir.notes()) log(ev, "note: " + n);

  ReleaseResult r;
  r.out_dir = o.out_dir;
  r.sweep = run_sweep(o.sweep, ev);
  SweepResult& s = r.sweep;
  r.model_name = model_name_of(s.quants.front().path);
  log(ev, "release " + o.out_dir + ": " + r.model_name + "-*");

  r.files = stage_model_files(o, s, r.model_name, dir, ev);
  CardFacts facts = card_facts(o, s, r.model_name);
  if (!s.imatrix_path.empty() && o.sweep.imatrix == ImatrixMode::kFile)
    s.imatrix_desc = "the given file " + fs::path(o.sweep.imatrix_file).filename().string();
  for (const auto& f : r.files)
    if (f.kind == "license") facts.license_file = f.name;
  if (facts.license.empty()) r.notes.push_back("no license found (give --license): the card has no license field");
  if (facts.base_model.empty()) r.notes.push_back("base model unknown (give --base-model ORG/NAME): the card has no base_model field");

  // Everything the card and reports say about files refers to the names in the folder.
  for (const auto& f : r.files)
    if (f.kind == "quant") s.quants[*f.quant].path = f.name;
  r.contexts = o.contexts;
  if (r.contexts.empty()) {
    r.contexts.push_back(std::min<uint64_t>(2048, facts.max_ctx ? facts.max_ctx : 2048));
    if (facts.max_ctx > r.contexts.front()) r.contexts.push_back(facts.max_ctx);
  }
  log(ev, "sha256 and memory estimates");
  for (auto& f : r.files) {
    f.sha256 = sha256_of_file(dir.file(f.name));
    check_interrupted();
  }
  r.memory = estimate_files(r.files, dir.staging(), r.contexts);

  // The reports and the card; then the sums over every file, the card included.
  write_file_atomic(dir.file("report.html"), report_html(s));
  r.files.push_back(describe(dir, "report.html", "report"));
  r.files.back().sha256 = sha256_of_file(dir.file("report.html"));
  std::sort(r.files.begin(), r.files.end(), [](const ReleaseFile& a, const ReleaseFile& b) { return a.name < b.name; });
  const std::string card = render_card(r, facts);
  write_file_atomic(dir.file("README.md"), card);
  // report.json lists every file but itself and the sums (its own hash cannot be inside it).
  ReleaseFile readme = describe(dir, "README.md", "card");
  readme.sha256 = sha256_hex(card);
  r.files.push_back(readme);
  std::sort(r.files.begin(), r.files.end(), [](const ReleaseFile& a, const ReleaseFile& b) { return a.name < b.name; });
  write_file_atomic(dir.file("report.json"), report_json(s, [&](JsonWriter& j) { release_json(j, r); }));
  ReleaseFile rj = describe(dir, "report.json", "report");
  rj.sha256 = sha256_of_file(dir.file("report.json"));
  r.files.push_back(rj);
  std::sort(r.files.begin(), r.files.end(), [](const ReleaseFile& a, const ReleaseFile& b) { return a.name < b.name; });
  std::string sums;
  for (const auto& f : r.files) sums += f.sha256 + "  " + f.name + "\n";
  write_file_atomic(dir.file(kSums), sums);

  check_interrupted();
  dir.commit();
  log(ev, "wrote " + o.out_dir + " (" + std::to_string(r.files.size() + 1) + " files)");
  return r;
}

}  // namespace smolq
