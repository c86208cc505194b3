// `smolq inspect PATH [--json] [--tensors] [--layers] [--check-data]`: what is inside a GGUF
// file, a safetensors file or a Hugging Face folder. A damaged file is reported, not fatal:
// everything readable is printed with the problems found. As a gate (docs/inspect.md):
//   exit 0  no error found (llama.cpp's loader checks pass; data finite when scanned)
//   exit 1  the path could not be read: missing, not GGUF, damaged bytes (truncated, bad offsets, ...)
//   exit 3  read, but problems were found (a missing tensor, a wrong shape, NaN weights, ...)
//   exit 2  usage error
#include <cstdio>
#include <iostream>

#include "cli/options.h"
#include "formats/error.h"
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
  opts.add_options()("path", po::value<std::string>()->required(), "GGUF file, safetensors file or HF folder")(
      "json", "print JSON (every section) instead of text")(
      "tensors", "print only the tensor table and the totals by type")(
      "layers", "print only the bits-per-weight table by layer")(
      "array-items", po::value<size_t>()->default_value(8), "items shown of long metadata arrays")(
      "check-data", po::value<std::string>()->default_value("auto")->implicit_value("yes"),
      "scan every tensor for NaN/Inf: yes, no, or auto (files up to 2 GiB)");
  po::positional_options_description pos;
  pos.add("path", 1);
  ParsedArgs p = parse_args(args, "smolq inspect PATH [--json] [--tensors] [--layers]", opts, pos);
  if (p.help) return 0;

  InspectView view;
  view.only_tensors = p.vm.count("tensors") > 0;
  view.only_layers = p.vm.count("layers") > 0;
  view.max_array_items = p.vm["array-items"].as<size_t>();
  const std::string check_data = p.vm["check-data"].as<std::string>();
  if (check_data != "yes" && check_data != "no" && check_data != "auto")
    throw UsageError("--check-data must be yes, no or auto");
  InspectReport r = inspect_path(p.vm["path"].as<std::string>());
  const bool readable = !unreadable(r);
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
