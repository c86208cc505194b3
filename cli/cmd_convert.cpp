// smolq convert: Hugging Face checkpoint folder -> GGUF, plain (--outtype) or straight to a
// quantized file type (--type Q4_K_M) in one pass.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>

#include "cli/optimize_args.h"
#include "cli/options.h"
#include "cli/quant_report.h"
#include "mix/target_mix.h"
#include "convert/model_source.h"
#include "convert/naming.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/interrupt.h"
#include "formats/model_config.h"
#include "formats/suggest.h"

namespace smolq::cli {
namespace {

struct OutType {
  const char* name;
  GgmlType type;
  FileType file_type;  // general.file_type (llama_ftype)
};
constexpr OutType kOutTypes[] = {{"f32", GgmlType::F32, FileType::kAllF32},
                                 {"f16", GgmlType::F16, FileType::kF16},
                                 {"bf16", GgmlType::BF16, FileType::kBF16},
                                 {"q8_0", GgmlType::Q8_0, FileType::kQ8_0}};


// The plain type named `name` (any case), or nullptr.
const OutType* find_out_type(const std::string& name) {
  const std::string l = lower_ascii(name);
  for (const auto& o : kOutTypes)
    if (l == o.name) return &o;
  return nullptr;
}

// Every option of `smolq convert`, as parsed.
struct ConvertArgs {
  std::string input, output, outtype, type, imatrix, name, metadata, pre, output_tensor_type, token_embedding_type;
  std::vector<std::string> tensor_types, include, exclude;
  std::vector<std::string> also;  // --also TYPE[=PATH]
  int threads = 0;
  TargetArgs target;
  OptimizeArgs optimize;
};

void add_convert_options(po::options_description& opts, ConvertArgs& a) {
  opts.add_options()
      (kOptModel, po::value<std::string>(&a.input), "the checkpoint: a folder (config.json, *.safetensors, tokenizer.json), a Hugging Face cache folder, or a repo id org/name[@revision] found in the cache")
      (kOptOutput, po::value<std::string>(&a.output), "output GGUF path (default: Basename-Size-Finetune-TYPE.gguf here, e.g. SmolLM2-135M-Instruct-Q4_K_M.gguf)")
      ("outtype", po::value<std::string>(&a.outtype), "plain weight type: f32, f16 (default), bf16 or q8_0 (any case)")
      ("type", po::value<std::string>(&a.type), "quantized file type, as llama-quantize names them: Q4_K_M, Q6_K, IQ4_XS, ...")
      ("imatrix", po::value<std::string>(&a.imatrix), "importance matrix for --type (llama.cpp GGUF or legacy .dat)")
      ("include-weights", po::value<std::vector<std::string>>(&a.include), "use the imatrix only for tensors whose GGUF name contains TEXT (repeatable)")
      ("exclude-weights", po::value<std::vector<std::string>>(&a.exclude), "do not use the imatrix for tensors whose GGUF name contains TEXT (repeatable)")
      ("output-tensor-type", po::value<std::string>(&a.output_tensor_type), "with --type: type of output.weight")
      ("token-embedding-type", po::value<std::string>(&a.token_embedding_type), "with --type: type of token_embd.weight")
      ("tensor-type", po::value<std::vector<std::string>>(&a.tensor_types), "with --type: REGEX=TYPE (repeatable)")
      ("pure", "with --type: no mixture rules, the file type's default type everywhere")
      ("dry-run", "print the per-tensor plan and size; write nothing")
      (kOptThreads, po::value<int>(&a.threads)->default_value(0), "worker threads (0 = all cores)")
      ("name", po::value<std::string>(&a.name), "general.name to record (default: from the model card, repo id or folder, as llama.cpp names it)")
      ("metadata", po::value<std::string>(&a.metadata), "JSON file of general.* keys that override the model card (llama.cpp's --metadata)")
      ("pre-tokenizer", po::value<std::string>(&a.pre), "override BPE pre-tokenizer detection: smollm, llama-bpe, gpt-2")
      ("also", po::value<std::vector<std::string>>(&a.also), "TYPE[=PATH]: also write the checkpoint as TYPE (f16, bf16, f32, q8_0 or a file type such as Q4_K_M; PATH defaults to the default name) in the same pass, reading the checkpoint once (repeatable)")
      (kOptQuiet, "no progress bar")
      (kOptJson, "print the summary of the written file as one JSON object (its path, size, types)");
  add_target_options(opts, a.target);
  add_optimize_options(opts, a.optimize);
}

// Option combinations that cannot work, reported before anything is read.
void check_convert_args(const ConvertArgs& a, const po::variables_map& vm) {
  if (a.input.empty()) throw UsageError("missing the model (a checkpoint folder or a repo id such as HuggingFaceTB/SmolLM2-135M-Instruct)");
  if (!a.outtype.empty() && !a.type.empty()) throw UsageError("give either --outtype or --type, not both");
  const bool target = target_requested(a.target);
  if (a.optimize.optimize && a.type.empty() && !target) throw UsageError("--optimize needs --type or --target-bpw / --target-size");
  if (target && (!a.outtype.empty() || !a.type.empty()))
    throw UsageError("--target-bpw / --target-size choose every type: give no --type or --outtype");
  if (!a.also.empty() && (target || a.optimize.optimize))
    throw UsageError("--also writes fixed types: not with --target-bpw / --target-size or --optimize");
  if (!a.also.empty() && vm.count("json")) throw UsageError("--json prints one file's summary: not with --also");
  bool quantized_also = false;
  for (const auto& x : a.also) {
    const std::string t = x.substr(0, x.find('='));
    if (t.empty()) throw UsageError("--also needs TYPE[=PATH] (got '" + x + "')");
    if (!find_out_type(t)) {
      parse_file_type(t);  // a mistyped type is reported before anything is read
      quantized_also = true;
    }
  }
  if (a.type.empty() && !target && !quantized_also && (!a.imatrix.empty() || !a.tensor_types.empty() || !a.output_tensor_type.empty() ||
                                    !a.token_embedding_type.empty() || vm.count("pure")))
    throw UsageError("--imatrix, --tensor-type, --output-tensor-type, --token-embedding-type and --pure need --type "
                     "(or a quantized --also)");
  if (!a.type.empty()) parse_file_type(a.type);  // a mistyped type is reported before anything is read
}

// The quantize options of `--type` / `--target-*` (the imatrix is read into `imat`).
QuantizeOptions quant_options_from(const ConvertArgs& a, const po::variables_map& vm, const std::string& opt_calib,
                                   ImatrixData& imat) {
  QuantizeOptions q;
  q.ftype = target_requested(a.target) ? FileType::kQ8_0 : parse_file_type(a.type);  // a target sets its own label
  fill_mixture_options(q.mixture, vm, a.tensor_types, a.output_tensor_type, a.token_embedding_type);
  q.include_weights = a.include;
  q.exclude_weights = a.exclude;
  if (!a.imatrix.empty()) {
    imat = read_imatrix(a.imatrix);
    q.imatrix = &imat;
    q.imatrix_path = a.imatrix;
  }
  if (a.optimize.optimize) {
    q.importance_from_calibration = a.imatrix.empty();
    const auto kv = optimize_metadata_kv(a.optimize, opt_calib, !a.imatrix.empty());
    q.override_kv.insert(q.override_kv.end(), kv.begin(), kv.end());
  }
  return q;
}

// --outtype: the plain weight type and file type.
void set_plain_type(std::string& outtype, HfBuildSettings& hf) {
  outtype = outtype.empty() ? "f16" : lower_ascii(outtype);
  for (const auto& o : kOutTypes)
    if (outtype == o.name) {
      hf.weight_type = o.type;
      hf.file_type = o.file_type;
      return;
    }
  std::vector<std::string> names;
  for (const auto& o : kOutTypes) names.emplace_back(o.name);
  const FileTypeInfo* ft = find_file_type(outtype);
  throw UsageError("--outtype must be one of f32, f16, bf16, q8_0 (got '" + outtype + "')" + did_you_mean(outtype, names) +
                   (ft ? "; for " + std::string(ft->name) + " use --type " + std::string(ft->name) : ""));
}

void print_dry_run(const BuildPlan& plan, const std::optional<TargetBuild>& tb) {
  if (tb) {
    std::fputs(format_mix_plan(tb->plan, tb->target).c_str(), stdout);
    std::printf("output file: %llu bytes (%s)\n", static_cast<unsigned long long>(tb->plan.file_size),
                human_bytes(tb->plan.file_size).c_str());
  } else if (plan.quant) {
    std::fputs(format_plan(plan.quant->plan).c_str(), stdout);
  } else {
    WriteResult t = tally_tensors(plan.outputs);
    for (const auto& o : plan.outputs)
      std::printf("%-34s %-8s\n", o.name.c_str(), std::string(type_info(o.type).name).c_str());
    std::printf("%zu tensors, %llu bytes, %.4f bits per weight\n", plan.outputs.size(),
                static_cast<unsigned long long>(t.tensor_bytes), t.bits_per_weight());
  }
}

// One --also file: its plan and where it goes.
struct AlsoFile {
  BuildPlan plan;
  std::string path;
};

// Plans every --also TYPE[=PATH]: a plain type as --outtype plans it, a file type with the
// quantize options of --type (imatrix, overrides) and that file type.
std::vector<AlsoFile> plan_also(const ConvertArgs& a, const po::variables_map& vm, const ModelSource& src,
                                const std::optional<QuantizeOptions>& quant, ImatrixData& imat, bool dry_run) {
  std::vector<AlsoFile> files;
  std::optional<QuantizeOptions> base = quant;
  for (const auto& x : a.also) {
    const size_t eq = x.find('=');
    const std::string t = x.substr(0, eq);
    AlsoFile f;
    std::string label;
    if (const OutType* o = find_out_type(t)) {
      f.plan = src.plan_plain(o->type, o->file_type);
      label = o->name;
    } else {
      if (!base) {  // plain main output: the quantize options come from the first quantized --also
        ConvertArgs b = a;
        b.type = t;
        base = quant_options_from(b, vm, std::string(), imat);
      }
      QuantizeOptions q = *base;
      q.ftype = parse_file_type(t);
      f.plan = src.plan(q);
      label = file_type_info(q.ftype).name;
    }
    f.path = eq == std::string::npos ? default_output_name(f.plan.metadata, label) : x.substr(eq + 1);
    if (f.path.empty()) throw UsageError("--also " + x + ": empty PATH");
    if (!dry_run) prepare_output(f.path);
    files.push_back(std::move(f));
  }
  return files;
}

}  // namespace

int run_convert(const std::vector<std::string>& args) {
  po::options_description opts("convert options");
  ConvertArgs a;
  add_convert_options(opts, a);
  po::positional_options_description pos;
  pos.add("model", 1);
  auto parsed = parse_args("convert", args,
                           "smolq convert MODEL [-o out.gguf] [--outtype f16 | --type Q4_K_M [--imatrix F]]\n"
                           "  MODEL: a checkpoint folder, a Hugging Face cache folder, or org/name[@revision] from the cache",
                           opts, pos);
  if (parsed.help) return 0;
  finish_optimize_args(parsed.vm, a.optimize);
  check_convert_args(a, parsed.vm);
  const bool target = target_requested(a.target);
  if (!target && !a.type.empty()) lattice_default_chunks(parsed.vm, a.optimize, parse_file_type(a.type));
  const std::string opt_calib = a.optimize.optimize ? resolve_calib(a.target.calib) : std::string();

  const ModelRef ref = resolve_model_ref(a.input);
  require_hf_folder(ref.path);  // a GGUF, a .safetensors file or a missing path named as such
  HfBuildSettings hf;
  hf.naming.repo_id = ref.repo_id;
  hf.naming.metadata_path = a.metadata;
  hf.naming.name_override = a.name;
  hf.tokenizer.pre_override = a.pre;
  std::optional<QuantizeOptions> quant;
  ImatrixData imat;
  if (!a.type.empty() || target) quant = quant_options_from(a, parsed.vm, opt_calib, imat);
  else set_plain_type(a.outtype, hf);
  const int nthreads = resolve_threads(a.threads);

  // The destination is checked before any work (profiling, quantizing can take minutes): a
  // given one before the checkpoint is opened, a default one once its name is known.
  const bool dry_run = parsed.vm.count("dry-run") > 0;
  if (!dry_run && !a.output.empty()) prepare_output(a.output);
  auto src = ModelSource::open_hf(ref.path, hf);
  // The plan of a fixed type is made once; it also names the default output file (llama.cpp's
  // naming convention, from the general.* keys this conversion writes).
  std::optional<BuildPlan> fixed;
  if (!target || a.output.empty()) fixed = src->plan(quant);
  const std::string out_path =
      !a.output.empty() ? a.output
                        : default_output_name(fixed->metadata, target ? "mix"
                                                               : quant ? std::string(file_type_info(quant->ftype).name)
                                                                       : a.outtype);
  if (!dry_run && a.output.empty()) prepare_output(out_path);
  std::optional<TargetBuild> tb;
  if (target) tb = build_target(a.target, *src, *quant, out_path, a.imatrix, nthreads);
  BuildPlan plan = tb ? std::move(tb->file) : std::move(*fixed);
  std::vector<AlsoFile> also = plan_also(a, parsed.vm, *src, quant, imat, dry_run);
  if (dry_run) {
    print_dry_run(plan, tb);
    for (const auto& f : also) {
      std::printf("\n--also %s:\n", f.path.c_str());
      print_dry_run(f.plan, std::nullopt);
    }
    return 0;
  }

  install_interrupt_handlers();
  const bool show = !parsed.vm.count("quiet") && isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  // --optimize: the output is opened first and every optimised tensor written into it as it is
  // made (the outcome owns the bytes only when they cannot be placed: a stream output).
  std::unique_ptr<GgufWriter> opened;
  std::optional<OptimizeOutcome> optimized;
  if (a.optimize.optimize) {
    opened = open_gguf_model(out_path, plan.metadata, plan.outputs);
    optimized = run_optimize(a.optimize, ref.path, opt_calib, plan.outputs, nthreads, parsed.vm.count("quiet") > 0,
                             opened.get());
  }
  std::vector<ModelSource::PlannedFile> files{{&plan, out_path, opened.get()}};
  for (const auto& f : also) files.push_back({&f.plan, f.path});
  const std::vector<WriteResult> results = src->write_all(files, nthreads, progress_printer(show));
  const WriteResult& written = results.front();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& w : plan.warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
  for (const auto& f : also)
    for (const auto& w : f.plan.warnings()) std::fprintf(stderr, "warning: %s: %s\n", f.path.c_str(), w.c_str());
  if (parsed.vm.count("json")) {
    print_write_summary_json(out_path, written, secs, nthreads, plan.imatrix_used(),
                             {{"size_label", plan.size_label}, {"pre_tokenizer", plan.pre_tokenizer},
                              {"pre_detected_by", plan.pre_detected_by}});
    return 0;
  }
  std::printf("%s parameters, pre-tokenizer '%s' (by %s)\n", plan.size_label.c_str(), plan.pre_tokenizer.c_str(),
              plan.pre_detected_by.c_str());
  print_write_summary(out_path, written, secs, nthreads, plan.imatrix_used());
  for (size_t k = 0; k < also.size(); ++k)
    print_write_summary(also[k].path, results[k + 1], secs, nthreads, also[k].plan.imatrix_used());
  return 0;
}

}  // namespace smolq::cli
