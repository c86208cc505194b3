#include "quantize/model_writer.h"

#include "formats/error.h"
#include "formats/finite_scan.h"
#include "formats/interrupt.h"

namespace smolq {

static uint64_t elements_of(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

WriteResult tally_tensors(const std::vector<OutputTensor>& tensors) {
  WriteResult r;
  for (const auto& t : tensors) {
    const uint64_t n = elements_of(t.shape);
    const uint64_t b = tensor_nbytes(t.type, t.shape, "tensor '" + t.name + "'");
    auto& tally = r.by_type[t.type];
    tally.tensors += 1;
    tally.elements += n;
    tally.bytes += b;
    r.elements += n;
    r.tensor_bytes += b;
  }
  return r;
}

WriteResult write_gguf_model(const std::string& path, const GgufMetadata& meta, const std::vector<OutputTensor>& tensors,
                             int threads, const std::function<void(const WriteProgress&)>& on_progress) {
  WriteResult result = tally_tensors(tensors);
  // Keep the source's alignment (general.alignment) when it has one.
  GgufWriter w(path, static_cast<uint32_t>(meta.opt_u64("general.alignment").value_or(32)));
  w.metadata() = meta;
  for (const auto& t : tensors) w.add_tensor(t.name, t.shape, t.type);
  w.begin_data();

  // One team of threads for all tensors (quantize_tensors_in_order), written in file order.
  WriteProgress prog;
  prog.n_tensors = tensors.size();
  prog.elements_total = result.elements;
  std::vector<TensorQuantizeJob> jobs(tensors.size());
  std::vector<const TensorQuantizeJob*> order(tensors.size(), nullptr);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const OutputTensor& t = tensors[i];
    if (!t.passthrough.empty()) {
      // Copied bytes are checked too, before anything is written: a NaN in an unchanged tensor
      // breaks the model as surely.
      if (auto bad = find_non_finite_tensor(t.type, t.passthrough, t.shape[0])) {
        const uint64_t ncols = t.shape[0];
        std::vector<float> row(ncols);
        dequantize_tensor_rows(t.type, t.passthrough, ncols, *bad / ncols, 1, row);
        throw Error("tensor '" + t.name + "': non-finite weight " + float_text(row[*bad % ncols]) + " at " +
                    element_position(*bad, ncols));
      }
      continue;
    }
    TensorQuantizeJob& job = jobs[i];
    job.type = t.type;
    job.ncols = t.shape[0];
    job.nrows = elements_of(t.shape) / job.ncols;
    job.source = t.source;
    job.imatrix = t.imatrix;
    job.label = t.name;
    order[i] = &job;
  }
  check_interrupted();
  if (on_progress) on_progress(prog);
  quantize_tensors_in_order(
      order, threads,
      [&](size_t i, std::span<const std::byte> bytes) {
        w.write_tensor(tensors[i].name, tensors[i].passthrough.empty() ? bytes : tensors[i].passthrough);
      },
      [&](size_t i, uint64_t elements_done) {
        check_interrupted();
        prog.tensor_index = i;
        prog.tensor = &tensors[i];
        prog.elements_done = elements_done;
        if (on_progress) on_progress(prog);
      });
  prog.tensor_index = tensors.size();
  prog.tensor = nullptr;
  prog.elements_done = result.elements;
  if (on_progress) on_progress(prog);
  result.file_size = w.commit();
  return result;
}

}  // namespace smolq
