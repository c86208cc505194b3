// smolq convert: Hugging Face checkpoint folder -> GGUF.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "cli/options.h"
#include "convert/converter.h"
#include "formats/error.h"
#include "formats/interrupt.h"

namespace smolq::cli {
namespace {

struct OutType {
  const char* name;
  GgmlType type;
  uint32_t file_type;  // llama_ftype
};
constexpr OutType kOutTypes[] = {
    {"f32", GgmlType::F32, 0}, {"f16", GgmlType::F16, 1}, {"bf16", GgmlType::BF16, 32}, {"q8_0", GgmlType::Q8_0, 7}};

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1ull << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

std::string default_output(const std::string& dir, const std::string& outtype) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  auto pos = d.find_last_of('/');
  std::string base = pos == std::string::npos ? d : d.substr(pos + 1);
  return base + "-" + outtype + ".gguf";
}

}  // namespace

int run_convert(const std::vector<std::string>& args) {
  po::options_description opts("convert options");
  std::string input, output, outtype = "f16", name, pre;
  int threads = 0;
  opts.add_options()
      ("input", po::value<std::string>(&input), "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)")
      ("output,o", po::value<std::string>(&output), "output GGUF path (default: <folder name>-<type>.gguf here)")
      ("outtype", po::value<std::string>(&outtype)->default_value("f16"), "weight type: f32, f16, bf16 or q8_0")
      ("threads,t", po::value<int>(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("name", po::value<std::string>(&name), "general.name to record (default: the folder name)")
      ("pre-tokenizer", po::value<std::string>(&pre),
       "override BPE pre-tokenizer detection: smollm, llama-bpe, gpt-2")
      ("quiet,q", "no progress bar");
  po::positional_options_description pos;
  pos.add("input", 1);
  auto parsed = parse_args(args, "smolq convert <hf-dir> [-o out.gguf] [--outtype f16]", opts, pos);
  if (parsed.help) return 0;
  if (input.empty()) throw UsageError("missing the checkpoint folder");

  const OutType* ot = nullptr;
  for (const auto& o : kOutTypes)
    if (outtype == o.name) ot = &o;
  if (!ot) throw UsageError("--outtype must be one of f32, f16, bf16, q8_0 (got '" + outtype + "')");

  ConvertOptions opt;
  opt.input_dir = input;
  opt.output_path = output.empty() ? default_output(input, outtype) : output;
  opt.weight_type = ot->type;
  opt.file_type = ot->file_type;
  opt.threads = resolve_threads(threads);
  opt.name_override = name;
  opt.tokenizer.pre_override = pre;
  const bool show = !parsed.vm.count("quiet") && isatty(STDERR_FILENO);
  opt.on_progress = [&](const WriteProgress& wp) {
    if (!show || wp.elements_total == 0) return;
    const double frac = static_cast<double>(wp.elements_done) / wp.elements_total;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %-40.40s", filled, "##############################", width - filled, "",
                 100 * frac, wp.tensor ? wp.tensor->name.c_str() : "done");
    if (!wp.tensor) std::fprintf(stderr, "\n");
  };

  install_interrupt_handlers();
  const auto t0 = std::chrono::steady_clock::now();
  ConvertSummary s = convert_checkpoint(opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("wrote %s (%s, %llu bytes)\n", opt.output_path.c_str(), human_bytes(s.written.file_size).c_str(),
              static_cast<unsigned long long>(s.written.file_size));
  std::printf("  %s parameters (%llu), pre-tokenizer '%s' (by %s)\n", s.size_label.c_str(),
              static_cast<unsigned long long>(s.written.elements), s.pre_tokenizer.c_str(), s.pre_detected_by.c_str());
  for (const auto& [type, tally] : s.written.by_type)
    std::printf("  %-6s %4llu tensors %12llu weights %10s\n", std::string(type_info(type).name).c_str(),
                static_cast<unsigned long long>(tally.tensors), static_cast<unsigned long long>(tally.elements),
                human_bytes(tally.bytes).c_str());
  std::printf("  effective %.3f bits per weight, %.1f s on %d threads\n", s.written.bits_per_weight(), secs, opt.threads);
  return 0;
}

}  // namespace smolq::cli
