// `smolq inspect MODEL [--json] [--tensors] [--layers] [--check-data]`: what is inside a GGUF
// file, a safetensors file, a Hugging Face folder or cache entry. A damaged file is reported, not fatal:
// everything readable is printed with the problems found. As a gate (docs/inspect.md):
//   exit 0  no error found (llama.cpp's loader checks pass; data finite when scanned)
//   exit 1  the path could not be read: missing, not GGUF, damaged bytes (truncated, bad offsets, ...)
//   exit 3  read, but problems were found (a missing tensor, a wrong shape, NaN weights, ...)
//   exit 2  usage error
#include <cstdio>
#include <iostream>

#include <filesystem>

#include "cli/options.h"
#include "convert/naming.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/model_config.h"
#include "inspect/inspect_render.h"
#include "inspect/model_check.h"
#include "inspect/model_report.h"

namespace smolq::cli {
namespace {

// Exit 1 (not 3) when the bytes themselves could not be read: a GGUF whose scan found
// structural errors, a damaged safetensors file, an HF folder whose weights are unreadable.
// Called before check_model adds the semantic findings.
bool unreadable(const InspectReport& r) {
  if (r.kind == SourceKind::kHfFolder) return r.format_line.find("unreadable") != std::string::npos;
  return r.has_errors();
}

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
  po::options_description opts("inspect options");
  opts.add_options()(kOptModel, po::value<std::string>()->required(),
                     "GGUF file, safetensors file, HF folder, Hugging Face cache folder or repo id org/name[@revision]")(
      kOptJson, "print JSON (every section) instead of text")(
      "tensors", "print only the tensor table and the totals by type")(
      "layers", "print only the bits-per-weight table by layer")(
      "array-items", po::value<size_t>()->default_value(8), "items shown of long metadata arrays")(
      "check-data", po::value<std::string>()->default_value("auto")->implicit_value("yes"),
      "scan every tensor for NaN/Inf: yes, no, or auto (files up to 2 GiB)");
  po::positional_options_description pos;
  pos.add("model", 1);
  ParsedArgs p = parse_args("inspect", args, "smolq inspect MODEL [--json] [--tensors] [--layers] [--check-data [yes|no|auto]]", opts, pos);
  if (p.help) return 0;

  InspectView view;
  view.only_tensors = p.vm.count("tensors") > 0;
  view.only_layers = p.vm.count("layers") > 0;
  view.max_array_items = p.vm["array-items"].as<size_t>();
  const std::string check_data = p.vm["check-data"].as<std::string>();
  if (check_data != "yes" && check_data != "no" && check_data != "auto")
    throw UsageError("--check-data must be yes, no or auto");
  const ModelRef ref = resolve_model_ref(p.vm["model"].as<std::string>());
  InspectReport r = inspect_path(ref.path);
  const bool readable = !unreadable(r);
  // A checkpoint folder has no GGUF metadata: show the general.* keys `smolq convert` would
  // write from its model card, repo id and folder name (convert/naming.h).
  // A folder inspect can read but convert cannot (unknown architecture, bad model card) keeps
  // its report; the reason is a finding.
  if (std::filesystem::is_directory(ref.path) && file_exists(ref.path + "/config.json")) {
    try {
      NamingInputs in;
      in.repo_id = ref.repo_id;
      const ModelConfig cfg = parse_hf_config(ref.path + "/config.json");
      write_general_metadata(load_model_metadata(ref.path, in, r.n_params()), cfg.arch, r.metadata);
    } catch (const Error& e) {
      r.findings.push_back({Severity::kWarning, FormatError::kNoOffset, std::string("general.* keys: ") + e.what()});
    }
  }
  if (readable) {
    check_model(r);
    if (check_data == "yes" || (check_data == "auto" && r.file_bytes <= kAutoCheckDataBytes)) {
      const uint64_t n = check_tensor_data(r);
      r.findings.push_back({Severity::kInfo, FormatError::kNoOffset,
                            "data checked: " + std::to_string(n) + " tensors scanned for NaN/Inf"});
    }
  }
  std::string out = p.vm.count("json") ? render_inspect_json(r, view) : render_inspect_text(r, view);
  // A file made by `--target-bpw/--target-size` (docs/mixed-precision.md) says so.
  if (!p.vm.count("json") && !view.only_tensors && !view.only_layers)
    if (auto target = r.metadata.opt_string("smolq.mix.target")) {
      char line[512];
      std::snprintf(line, sizeof line,
                    "made by target allocation (smolq): target %s, %.4f bpw, predicted KLD %.5f on %s, profile %s\n",
                    target->c_str(), r.metadata.opt_f64("smolq.mix.bpw").value_or(0),
                    r.metadata.opt_f64("smolq.mix.predicted_kld").value_or(0),
                    r.metadata.opt_string("smolq.mix.calibration").value_or("?").c_str(),
                    r.metadata.opt_string("smolq.mix.profile").value_or("?").c_str());
      out += line;
    }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (!readable) return 1;
  return r.has_errors() ? 3 : 0;
}

}  // namespace smolq::cli
