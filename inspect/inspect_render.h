// Rendering an InspectReport for people (aligned text) or machines (JSON).
#pragma once
#include <string>

#include "inspect/model_report.h"

namespace smolq {

struct InspectView {
  // Which sections to print. With neither flag, everything except the per-layer table.
  bool only_tensors = false;  // --tensors: the tensor table (and totals by type)
  bool only_layers = false;   // --layers: the per-layer bits-per-weight table
  size_t max_array_items = 8; // long metadata arrays are summarised to this many items
};

std::string render_inspect_text(const InspectReport& r, const InspectView& v);
// JSON always holds every section; arrays in metadata are summarised (count + first items).
std::string render_inspect_json(const InspectReport& r, const InspectView& v);

}  // namespace smolq
