// The model card (README.md) of a release, in the Hugging Face Hub's conventions: YAML front
// matter (written with yaml-cpp through convert/model_card.h), then Markdown. Every figure is
// taken from the sweep's result or the release's file list, formatted by the functions below,
// so a reader (or the test) can check the card against report.json. Nothing in it depends on
// the time or the machine: the same inputs give the same bytes.
#pragma once
#include <string>

#include "convert/model_card.h"
#include "release/release.h"

namespace smolq {

// The front matter's fields: base_model, base_model_relation: quantized, quantized_by, license,
// tags (gguf first), language, pipeline_tag, library_name: gguf.
MetaTree card_front_matter(const CardFacts& f);

// The whole README.md.
std::string render_card(const ReleaseResult& r, const CardFacts& f);

// How the card prints its figures (report.json holds the unrounded values).
namespace card {
std::string bytes(uint64_t n);     // "144811872" (exact)
std::string mib(uint64_t n);       // "138.1 MiB"
std::string bpw(double v);         // "8.5000"
std::string kld(double v);         // "0.000412"
std::string ppl(double v);         // "17.6215"
std::string percent(double v);     // "98.54"
}  // namespace card

}  // namespace smolq
