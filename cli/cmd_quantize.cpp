// smolq quantize: GGUF -> GGUF in another file type (llama-quantize's options).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/optimize_args.h"
#include "cli/options.h"
#include "cli/quant_report.h"
#include "mix/target_mix.h"
#include "convert/model_source.h"
#include "formats/error.h"
#include "formats/interrupt.h"
#include "quantize/quantize_model.h"

namespace smolq::cli {

int run_quantize(const std::vector<std::string>& args) {
  po::options_description opts("quantize options");
  std::string input, output, type, imatrix, output_tensor_type, token_embedding_type;
  std::vector<std::string> tensor_types, include, exclude, override_kv, positional;
  int threads = 0;
  TargetArgs target_args;
  OptimizeArgs opt_args;
  opts.add_options()
      (kOptModel, po::value<std::string>(&input), "input GGUF (or the first positional argument)")
      (kOptOutput, po::value<std::string>(&output), "output GGUF (or the second positional argument)")
      ("type", po::value<std::string>(&type), "file type, any case: Q4_K_M, Q8_0, IQ4_XS, ... (or the last positional argument; see --list-types)")
      ("imatrix", po::value<std::string>(&imatrix), "importance matrix (llama.cpp GGUF or legacy .dat)")
      ("include-weights", po::value<std::vector<std::string>>(&include), "use the imatrix only for tensors whose name contains TEXT (repeatable)")
      ("exclude-weights", po::value<std::vector<std::string>>(&exclude), "do not use the imatrix for tensors whose name contains TEXT (repeatable)")
      ("output-tensor-type", po::value<std::string>(&output_tensor_type), "type of output.weight")
      ("token-embedding-type", po::value<std::string>(&token_embedding_type), "type of token_embd.weight")
      ("tensor-type", po::value<std::vector<std::string>>(&tensor_types), "REGEX=TYPE for matching tensors (repeatable, first match wins)")
      ("leave-output-tensor", "keep output.weight as it is")
      ("pure", "no mixture rules: every quantizable tensor gets the file type's default type")
      ("allow-requantize", "allow quantizing tensors that are already quantized")
      ("override-kv", po::value<std::vector<std::string>>(&override_kv), "KEY=TYPE:VALUE metadata override (repeatable)")
      ("dry-run", "print the per-tensor plan, size and bits per weight; write nothing")
      ("list-types", "list the file types and exit")
      (kOptThreads, po::value<int>(&threads)->default_value(0), "worker threads (0 = all cores)")
      (kOptQuiet, "no progress bar")
      (kOptJson, "print the summary of the written file as one JSON object (its path, size, types)");
  add_target_options(opts, target_args);
  add_optimize_options(opts, opt_args);
  po::options_description hidden;
  hidden.add_options()("positional", po::value<std::vector<std::string>>(&positional), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("positional", -1);
  auto parsed = parse_args("quantize", args,
                           "smolq quantize <in.gguf> <out.gguf> <TYPE> [--imatrix F] [options]\n"
                           "       smolq quantize <in.gguf> <out.gguf> --target-bpw B | --target-size S [--calib TEXT] [options]\n"
                           "       smolq quantize -m in.gguf -o out.gguf --type Q4_K_M [options]",
                           all, pos, &opts);
  if (parsed.help) return 0;
  // llama-quantize's positional forms: IN OUT TYPE, or any of them given by -m / -o / --type.
  for (std::string* slot : {&input, &output, &type}) {
    if (positional.empty()) break;
    if (!slot->empty()) continue;
    if (slot == &output && positional.size() == 1 && type.empty() && !target_requested(target_args) &&
        parsed.vm.count("dry-run"))
      continue;  // `quantize in.gguf TYPE --dry-run`: no output file
    *slot = positional.front();
    positional.erase(positional.begin());
  }
  if (!positional.empty()) throw UsageError("unexpected argument '" + positional.front() + "'");
  if (parsed.vm.count("list-types")) {
    print_file_types();
    return 0;
  }
  const bool dry = parsed.vm.count("dry-run") > 0;
  finish_optimize_args(parsed.vm, opt_args);
  const bool target = target_requested(target_args);
  if (target && !type.empty()) throw UsageError("--target-bpw / --target-size choose every type: give no TYPE");
  if (input.empty() || (type.empty() && !target) || (output.empty() && !dry))
    throw UsageError("usage: smolq quantize <in.gguf> <out.gguf> <TYPE>  (or --target-bpw B / --target-size S instead of TYPE)");
  if (!dry) {
    std::error_code ec;
    if (std::filesystem::equivalent(input, output, ec))
      throw UsageError("input and output are the same file: '" + input + "'");
  }

  QuantizeOptions q;
  q.ftype = target ? FileType::kQ8_0 : parse_file_type(type);  // a target sets its own label
  if (!target) lattice_default_chunks(parsed.vm, opt_args, q.ftype);
  fill_mixture_options(q.mixture, parsed.vm, tensor_types, output_tensor_type, token_embedding_type);
  resolve_threads(threads);  // an absurd --threads is a usage error before any work
  require_input(input);
  if (!dry) prepare_output(output);  // before minutes of work, not after
  // After the type checks (a mistyped name is reported first); refuses a GGUF that is not a model.
  auto src = ModelSource::open_gguf(input);
  q.include_weights = include;
  q.exclude_weights = exclude;
  q.allow_requantize = parsed.vm.count("allow-requantize") > 0;
  q.override_kv = override_kv;
  q.dry_run = dry;
  for (const auto& spec : override_kv) parse_override_kv(spec);  // reject bad specs before any work
  std::string opt_calib;
  if (opt_args.optimize) {
    opt_calib = resolve_calib(target_args.calib);
    q.importance_from_calibration = imatrix.empty();
    const auto kv = optimize_metadata_kv(opt_args, opt_calib, !imatrix.empty());
    q.override_kv.insert(q.override_kv.end(), kv.begin(), kv.end());
  }
  ImatrixData imat;
  if (!imatrix.empty()) {
    imat = read_imatrix(imatrix);
    q.imatrix = &imat;
    q.imatrix_path = imatrix;
  }

  std::optional<TargetBuild> tb;
  if (target) tb = build_target(target_args, *src, q, output, imatrix, resolve_threads(threads));
  BuildPlan plan = tb ? std::move(tb->file) : src->plan(q);
  for (const auto& w : plan.warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (dry) {
    // The exact size of the file this would write: same metadata, same layout function.
    std::fputs(tb ? format_mix_plan(tb->plan, tb->target).c_str() : format_plan(plan.quant->plan).c_str(), stdout);
    std::printf("output file: %llu bytes (%s)\n", static_cast<unsigned long long>(plan.layout.file_size),
                human_bytes(plan.layout.file_size).c_str());
    return 0;
  }

  install_interrupt_handlers();
  const int nthreads = resolve_threads(threads);
  const bool show = !parsed.vm.count("quiet") && isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  // --optimize: the output is opened first and every optimised tensor written into it as it is
  // made (the outcome owns the bytes only when they cannot be placed: a stream output).
  std::unique_ptr<GgufWriter> opened;
  std::optional<OptimizeOutcome> optimized;
  if (opt_args.optimize) {
    opened = open_gguf_model(output, plan.metadata, plan.outputs);
    optimized = run_optimize(opt_args, input, opt_calib, plan.outputs, nthreads, parsed.vm.count("quiet") > 0,
                             opened.get());
  }
  WriteResult w = src->write(plan, output, nthreads, progress_printer(show), opened.get());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (parsed.vm.count("json")) print_write_summary_json(output, w, secs, nthreads, plan.imatrix_used());
  else print_write_summary(output, w, secs, nthreads, plan.imatrix_used());
  return 0;
}

}  // namespace smolq::cli
