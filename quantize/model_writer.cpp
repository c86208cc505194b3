#include "quantize/model_writer.h"

#include <memory>

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

// Refuses a copied tensor with a NaN or Inf, before anything is written: a NaN in an
// unchanged tensor breaks the model as surely as a quantized one.
static void check_encoded(const OutputTensor& t, std::span<const std::byte> bytes) {
  if (auto bad = find_non_finite_tensor(t.type, bytes, t.shape[0])) {
    const uint64_t ncols = t.shape[0];
    std::vector<float> row(ncols);
    dequantize_tensor_rows(t.type, bytes, ncols, *bad / ncols, 1, row);
    throw Error("tensor '" + t.name + "': non-finite weight " + float_text(row[*bad % ncols]) + " at " +
                element_position(*bad, ncols));
  }
}
static void check_passthrough(const OutputTensor& t) { check_encoded(t, t.passthrough); }

std::unique_ptr<GgufWriter> open_gguf_model(const std::string& path, const GgufMetadata& meta,
                                            const std::vector<OutputTensor>& tensors) {
  // Keep the source's alignment (general.alignment) when it has one.
  auto w = std::make_unique<GgufWriter>(path, static_cast<uint32_t>(meta.opt_u64("general.alignment").value_or(32)));
  w->metadata() = meta;
  for (const auto& t : tensors) w->add_tensor(t.name, t.shape, t.type);
  w->begin_data();
  return w;
}

void place_tensor(GgufWriter& w, const OutputTensor& t, std::span<const std::byte> bytes) {
  check_encoded(t, bytes);
  w.place_tensor(t.name, bytes);
}

WriteResult write_gguf_model(const std::string& path, const GgufMetadata& meta, const std::vector<OutputTensor>& tensors,
                             int threads, const std::function<void(const WriteProgress&)>& on_progress) {
  return write_gguf_models({{path, &meta, &tensors}}, threads, on_progress).front();
}

std::vector<WriteResult> write_gguf_models(const std::vector<ModelFileOutput>& files, int threads,
                                           const std::function<void(const WriteProgress&)>& on_progress) {
  const size_t nf = files.size();
  const std::vector<OutputTensor>& first = *files.front().tensors;
  const size_t nt = first.size();
  for (const auto& f : files) {
    if (f.tensors->size() != nt) throw Error("internal: files of one pass list different tensors");
    for (size_t i = 0; i < nt; ++i)
      if ((*f.tensors)[i].name != first[i].name) throw Error("internal: files of one pass list different tensors");
  }
  std::vector<WriteResult> results;
  std::vector<std::unique_ptr<GgufWriter>> owned;
  std::vector<GgufWriter*> writers;
  WriteProgress prog;
  prog.n_tensors = nt;
  for (const auto& f : files) {
    results.push_back(tally_tensors(*f.tensors));
    prog.elements_total += results.back().elements;
    if (!f.opened) owned.push_back(open_gguf_model(f.path, *f.metadata, *f.tensors));
    writers.push_back(f.opened ? f.opened : owned.back().get());
  }

  // One team of threads for all tensors of all files (quantize_tensors_in_order); job
  // i * nf + k is tensor i of file k, so each file is written in its own order.
  const auto tensor_of = [&](size_t job) -> const OutputTensor& { return (*files[job % nf].tensors)[job / nf]; };
  const auto placed = [&](size_t job) { return writers[job % nf]->placed(job / nf); };  // already in the file
  std::vector<TensorQuantizeJob> jobs(nt * nf);
  std::vector<const TensorQuantizeJob*> order(nt * nf, nullptr);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const OutputTensor& t = tensor_of(j);
    if (placed(j)) continue;
    if (!t.passthrough.empty()) {
      check_passthrough(t);
      continue;
    }
    TensorQuantizeJob& job = jobs[j];
    job.type = t.type;
    job.ncols = t.shape[0];
    job.nrows = elements_of(t.shape) / job.ncols;
    job.source = t.source;
    job.imatrix = t.imatrix;
    job.label = t.name;
    order[j] = &job;
  }
  check_interrupted();
  if (on_progress) on_progress(prog);
  quantize_tensors_in_order(
      order, threads,
      [&](size_t j, std::span<const std::byte> bytes) {
        const OutputTensor& t = tensor_of(j);
        if (!placed(j)) writers[j % nf]->write_tensor(t.name, t.passthrough.empty() ? bytes : t.passthrough);
      },
      [&](size_t j, uint64_t elements_done) {
        check_interrupted();
        prog.tensor_index = j / nf;
        prog.tensor = &first[j / nf];
        prog.elements_done = elements_done;
        if (on_progress) on_progress(prog);
      });
  prog.tensor_index = nt;
  prog.tensor = nullptr;
  prog.elements_done = prog.elements_total;
  if (on_progress) on_progress(prog);
  for (size_t k = 0; k < nf; ++k) results[k].file_size = writers[k]->commit();
  return results;
}

}  // namespace smolq
