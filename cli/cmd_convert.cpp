// smolq convert: Hugging Face checkpoint folder -> GGUF, plain (--outtype) or straight to a
// quantized file type (--type Q4_K_M) in one pass.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "cli/optimize_args.h"
#include "cli/options.h"
#include "cli/quant_report.h"
#include "cli/target_mix.h"
#include "convert/converter.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "formats/sha256.h"
#include "verify/tokenizer.h"

namespace smolq::cli {
namespace {

struct OutType {
  const char* name;
  GgmlType type;
  uint32_t file_type;  // llama_ftype
};
constexpr OutType kOutTypes[] = {
    {"f32", GgmlType::F32, 0}, {"f16", GgmlType::F16, 1}, {"bf16", GgmlType::BF16, 32}, {"q8_0", GgmlType::Q8_0, 7}};

std::string default_output(const std::string& dir, const std::string& type) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  auto pos = d.find_last_of('/');
  std::string base = pos == std::string::npos ? d : d.substr(pos + 1);
  return base + "-" + type + ".gguf";
}

// llama.cpp's pre-tokenizer fingerprint: SHA-256 of the probe text's token ids written as a
// Python list ("[1, 2, 3]"). Needs our tokenizer, which lives in verify/, hence here.
std::optional<std::string> probe_hash(const std::string& tokenizer_json) {
  try {
    Tokenizer tok = Tokenizer::from_hf_json(tokenizer_json);
    std::vector<int32_t> ids = tok.encode(pre_tokenizer_probe_text(), /*add_special=*/true);
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return sha256_hex(s + "]");
  } catch (const Error&) {
    return std::nullopt;  // a tokenizer we cannot run: fall back to structural detection
  }
}

}  // namespace

int run_convert(const std::vector<std::string>& args) {
  po::options_description opts("convert options");
  std::string input, output, outtype, type, imatrix, name, pre, output_tensor_type, token_embedding_type;
  std::vector<std::string> tensor_types, include, exclude;
  int threads = 0;
  TargetArgs target_args;
  OptimizeArgs opt_args;
  opts.add_options()
      ("input", po::value<std::string>(&input), "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)")
      ("output,o", po::value<std::string>(&output), "output GGUF path (default: <folder name>-<type>.gguf here)")
      ("outtype", po::value<std::string>(&outtype), "plain weight type: f32, f16 (default), bf16 or q8_0")
      ("type", po::value<std::string>(&type), "quantized file type, as llama-quantize names them: Q4_K_M, Q6_K, IQ4_XS, ...")
      ("imatrix", po::value<std::string>(&imatrix), "importance matrix for --type (llama.cpp GGUF or legacy .dat)")
      ("include-weights", po::value<std::vector<std::string>>(&include), "use the imatrix only for tensors matching REGEX")
      ("exclude-weights", po::value<std::vector<std::string>>(&exclude), "do not use the imatrix for tensors matching REGEX")
      ("output-tensor-type", po::value<std::string>(&output_tensor_type), "with --type: type of output.weight")
      ("token-embedding-type", po::value<std::string>(&token_embedding_type), "with --type: type of token_embd.weight")
      ("tensor-type", po::value<std::vector<std::string>>(&tensor_types), "with --type: REGEX=TYPE (repeatable)")
      ("pure", "with --type: no mixture rules, the file type's default type everywhere")
      ("dry-run", "print the per-tensor plan and size; write nothing")
      ("threads,t", po::value<int>(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("name", po::value<std::string>(&name), "general.name to record (default: the folder name)")
      ("pre-tokenizer", po::value<std::string>(&pre), "override BPE pre-tokenizer detection: smollm, llama-bpe, gpt-2")
      ("quiet,q", "no progress bar");
  add_target_options(opts, target_args);
  add_optimize_options(opts, opt_args);
  po::positional_options_description pos;
  pos.add("input", 1);
  auto parsed = parse_args(args, "smolq convert <hf-dir> [-o out.gguf] [--outtype f16 | --type Q4_K_M [--imatrix F]]",
                           opts, pos);
  if (parsed.help) return 0;
  if (input.empty()) throw UsageError("missing the checkpoint folder");
  if (!outtype.empty() && !type.empty()) throw UsageError("give either --outtype or --type, not both");
  const bool target = target_requested(target_args);
  finish_optimize_args(parsed.vm, opt_args);
  if (opt_args.optimize && type.empty() && !target) throw UsageError("--optimize needs --type or --target-bpw / --target-size");
  if (target && (!outtype.empty() || !type.empty()))
    throw UsageError("--target-bpw / --target-size choose every type: give no --type or --outtype");
  if (type.empty() && !target && (!imatrix.empty() || !tensor_types.empty() || !output_tensor_type.empty() ||
                       !token_embedding_type.empty() || parsed.vm.count("pure")))
    throw UsageError("--imatrix, --tensor-type, --output-tensor-type, --token-embedding-type and --pure need --type");

  ConvertOptions opt;
  opt.input_dir = input;
  ImatrixData imat;
  if (!type.empty() || target) {
    QuantizeOptions q;
    q.ftype = target ? FileType::kQ8_0 : parse_file_type(type);  // a target sets its own label below
    fill_mixture_options(q.mixture, parsed.vm, tensor_types, output_tensor_type, token_embedding_type);
    q.include_weights = include;
    q.exclude_weights = exclude;
    if (!imatrix.empty()) {
      imat = read_imatrix(imatrix);
      q.imatrix = &imat;
      q.imatrix_path = imatrix;
    }
    if (opt_args.optimize) {
      q.importance_from_calibration = imatrix.empty();
      const auto kv = optimize_metadata_kv(opt_args, resolve_calib(target_args.calib), !imatrix.empty());
      q.override_kv.insert(q.override_kv.end(), kv.begin(), kv.end());
    }
    opt.quant = q;
    opt.file_type = static_cast<uint32_t>(q.ftype);
  } else {
    if (outtype.empty()) outtype = "f16";
    const OutType* ot = nullptr;
    for (const auto& o : kOutTypes)
      if (outtype == o.name) ot = &o;
    if (!ot) throw UsageError("--outtype must be one of f32, f16, bf16, q8_0 (got '" + outtype + "'); for other types use --type");
    opt.weight_type = ot->type;
    opt.file_type = ot->file_type;
  }
  opt.output_path = output.empty() ? default_output(input, target ? "mix" : type.empty() ? outtype : type) : output;
  opt.threads = resolve_threads(threads);
  opt.name_override = name;
  opt.tokenizer.pre_override = pre;
  opt.tokenizer.probe_hash = probe_hash;
  const bool show = !parsed.vm.count("quiet") && isatty(STDERR_FILENO);
  opt.on_progress = progress_printer(show);

  std::optional<TargetDecision> td;
  if (target) {
    auto ck = SafetensorsCheckpoint::open(opt.input_dir);
    // The file as planned with placeholder mix keys: its tensors and where their data starts.
    auto plan_file = [&](const std::vector<std::string>& kv) {
      ConvertOptions o2 = opt;
      o2.quant->dry_run = true;
      o2.quant->override_kv.insert(o2.quant->override_kv.end(), kv.begin(), kv.end());
      const ConvertPlan p = plan_conversion(o2, *ck);
      PlannedFile f;
      for (const auto& o : p.outputs) f.tensors.push_back({o.name, o.shape, o.type});
      f.alignment = static_cast<uint32_t>(p.metadata.opt_u64("general.alignment").value_or(32));
      f.data_offset = plan_gguf_layout(p.metadata, f.tensors, f.alignment).data_offset;
      return f;
    };
    td = decide_target(target_args, input, opt.output_path, opt.quant->imatrix, imatrix, opt.threads, plan_file);
    opt.quant->assigned_types = td->plan.types;
    opt.quant->ftype = td->plan.label;
    opt.file_type = static_cast<uint32_t>(td->plan.label);
    opt.quant->override_kv.insert(opt.quant->override_kv.end(), td->mix_kv.begin(), td->mix_kv.end());
    // The exact file this will write must be the allocator's.
    const ConvertPlan p = plan_conversion(opt, *ck);
    std::vector<GgufPlannedTensor> planned;
    for (const auto& o : p.outputs) planned.push_back({o.name, o.shape, o.type});
    const uint32_t alignment = static_cast<uint32_t>(p.metadata.opt_u64("general.alignment").value_or(32));
    check_target_met(*td, plan_gguf_layout(p.metadata, planned, alignment).file_size, p.quant->plan.bits_per_weight());
  }

  if (parsed.vm.count("dry-run")) {
    auto ck = SafetensorsCheckpoint::open(opt.input_dir);
    ConvertPlan plan = plan_conversion(opt, *ck);
    if (td) {
      std::fputs(format_mix_plan(td->plan, td->target).c_str(), stdout);
      std::printf("output file: %llu bytes (%s)\n", static_cast<unsigned long long>(td->plan.file_size),
                  human_bytes(td->plan.file_size).c_str());
    } else if (plan.quant) {
      std::fputs(format_plan(plan.quant->plan).c_str(), stdout);
    } else {
      WriteResult t = tally_tensors(plan.outputs);
      for (const auto& o : plan.outputs)
        std::printf("%-34s %-8s\n", o.name.c_str(), std::string(type_info(o.type).name).c_str());
      std::printf("%zu tensors, %llu bytes, %.4f bits per weight\n", plan.outputs.size(),
                  static_cast<unsigned long long>(t.tensor_bytes), t.bits_per_weight());
    }
    return 0;
  }

  install_interrupt_handlers();
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<OptimizeOutcome> optimized;  // owns the optimised tensors' bytes until written
  if (opt_args.optimize) {
    const std::string calib = resolve_calib(target_args.calib);
    const bool quiet = parsed.vm.count("quiet") > 0;
    opt.before_write = [&, calib, quiet](std::vector<OutputTensor>& outs) {
      optimized = run_optimize(opt_args, input, calib, outs, opt.threads, quiet);
    };
  }
  ConvertSummary s = convert_checkpoint(opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& w : s.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::printf("%s parameters, pre-tokenizer '%s' (by %s)\n", s.size_label.c_str(), s.pre_tokenizer.c_str(),
              s.pre_detected_by.c_str());
  print_write_summary(opt.output_path, s.written, secs, opt.threads, s.imatrix_used);
  return 0;
}

}  // namespace smolq::cli
