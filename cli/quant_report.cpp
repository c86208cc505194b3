#include "cli/quant_report.h"

#include "formats/json_writer.h"

#include <cstdio>

#include "formats/error.h"

namespace smolq::cli {

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1ull << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

void print_file_types() {
  std::printf("%-9s %-8s %-6s %s\n", "type", "default", "imat", "summary");
  for (const auto& f : all_file_types())
    std::printf("%-9s %-8s %-6s %s\n", std::string(f.name).c_str(), std::string(type_info(f.default_type).name).c_str(),
                f.requires_imatrix ? "needs" : "", std::string(f.summary).c_str());
}

static GgmlType parse_weight_type(const std::string& s, const char* option) {
  const TypeGeometry* g = find_type(s);
  if (!g || !g->weight_type) throw UsageError(std::string(option) + " '" + s + "' is not a ggml weight type");
  return g->id;
}

void fill_mixture_options(MixtureOptions& m, const po::variables_map& vm, const std::vector<std::string>& tensor_types,
                          const std::string& output_tensor_type, const std::string& token_embedding_type) {
  m.pure = vm.count("pure") > 0;
  m.leave_output_tensor = vm.count("leave-output-tensor") > 0;
  if (!output_tensor_type.empty()) m.output_tensor_type = parse_weight_type(output_tensor_type, "--output-tensor-type");
  if (!token_embedding_type.empty())
    m.token_embedding_type = parse_weight_type(token_embedding_type, "--token-embedding-type");
  for (const auto& spec : tensor_types) m.tensor_types.push_back(parse_tensor_type_override(spec));
}

std::function<void(const WriteProgress&)> progress_printer(bool enabled) {
  if (!enabled) return {};
  return [](const WriteProgress& wp) {
    if (wp.elements_total == 0) return;
    const double frac = static_cast<double>(wp.elements_done) / wp.elements_total;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %-40.40s", filled, "##############################", width - filled, "",
                 100 * frac, wp.tensor ? wp.tensor->name.c_str() : "done");
    if (!wp.tensor) std::fprintf(stderr, "\n");
  };
}

void print_write_summary(const std::string& path, const WriteResult& w, double seconds, int threads, int imatrix_used) {
  std::printf("wrote %s (%s, %llu bytes)\n", path.c_str(), human_bytes(w.file_size).c_str(),
              static_cast<unsigned long long>(w.file_size));
  for (const auto& [type, tally] : w.by_type)
    std::printf("  %-8s %4llu tensors %12llu weights %10s\n", std::string(type_info(type).name).c_str(),
                static_cast<unsigned long long>(tally.tensors), static_cast<unsigned long long>(tally.elements),
                human_bytes(tally.bytes).c_str());
  std::printf("  effective %.4f bits per weight", w.bits_per_weight());
  if (imatrix_used > 0) std::printf(", importance data on %d tensors", imatrix_used);
  std::printf(", %.1f s on %d threads\n", seconds, threads);
}

void print_write_summary_json(const std::string& path, const WriteResult& w, double seconds, int threads, int imatrix_used,
                              const std::vector<std::pair<std::string, std::string>>& extra) {
  JsonWriter j;
  j.begin_object().field("output", path).field("file_size", w.file_size).field("weights", w.elements);
  j.field("tensor_bytes", w.tensor_bytes).key("bits_per_weight").value(w.bits_per_weight(), 9);
  j.key("tensors_by_type").begin_object();
  for (const auto& [type, tally] : w.by_type) {
    j.key(type_info(type).name).begin_object();
    j.field("tensors", tally.tensors).field("weights", tally.elements).field("bytes", tally.bytes).end_object();
  }
  j.end_object();
  j.field("imatrix_tensors", imatrix_used).key("seconds").value(seconds, 6).field("threads", threads);
  for (const auto& [k, v] : extra) j.field(k, v);
  j.end_object();
  std::printf("%s\n", j.str().c_str());
}

}  // namespace smolq::cli
