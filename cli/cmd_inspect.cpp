// `smolq inspect PATH [--json] [--tensors] [--layers]`: what is inside a GGUF file, a
// safetensors file or a Hugging Face folder, from headers only. A damaged file is reported,
// not fatal: everything readable is printed with the problems found; the exit code is 1
// when any problem is an error (0 otherwise), so scripts can check files.
#include <cstdio>
#include <iostream>

#include <filesystem>

#include "cli/options.h"
#include "convert/naming.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/model_config.h"
#include "inspect/inspect_render.h"
#include "inspect/model_report.h"

namespace smolq::cli {

int run_inspect(const std::vector<std::string>& args) {
  po::options_description opts("inspect options");
  opts.add_options()(kOptModel, po::value<std::string>()->required(),
                     "GGUF file, safetensors file, HF folder, Hugging Face cache folder or repo id org/name[@revision]")(
      kOptJson, "print JSON (every section) instead of text")(
      "tensors", "print only the tensor table and the totals by type")(
      "layers", "print only the bits-per-weight table by layer")(
      "array-items", po::value<size_t>()->default_value(8), "items shown of long metadata arrays");
  po::positional_options_description pos;
  pos.add("model", 1);
  ParsedArgs p = parse_args("inspect", args, "smolq inspect MODEL [--json] [--tensors] [--layers]", opts, pos);
  if (p.help) return 0;

  InspectView view;
  view.only_tensors = p.vm.count("tensors") > 0;
  view.only_layers = p.vm.count("layers") > 0;
  view.max_array_items = p.vm["array-items"].as<size_t>();
  const ModelRef ref = resolve_model_ref(p.vm["model"].as<std::string>());
  InspectReport r = inspect_path(ref.path);
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
      r.findings.push_back({Severity::kWarning, UINT64_MAX, std::string("general.* keys: ") + e.what()});
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
  return r.has_errors() ? 1 : 0;
}

}  // namespace smolq::cli
