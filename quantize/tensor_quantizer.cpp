#include "quantize/tensor_quantizer.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <exception>
#include <memory>
#include <string>
#include <mutex>
#include <new>

#include "formats/error.h"
#include "formats/finite_scan.h"
#include "quantize/registry.h"

namespace smolq {

// Rows per work item: large enough to amortise scheduling, small enough to balance load
// and keep the per-thread float buffer small (a few MB at most).
static uint64_t rows_per_chunk(uint64_t ncols) {
  const uint64_t target_elems = 1u << 18;  // ~1 MB of f32 per chunk
  return std::max<uint64_t>(1, target_elems / std::max<uint64_t>(ncols, 1));
}

std::vector<std::byte> quantize_tensor(const TensorQuantizeJob& job) {
  const QTypeInfo& q = qtype(job.type);
  if (!q.can_quantize())
    throw Error("no quantizer for type " + std::string(q.geo->name) + " yet");
  const auto rb = row_bytes(job.type, job.ncols);
  if (!rb) throw Error("row of " + std::to_string(job.ncols) + " is not a multiple of the " + std::string(q.geo->name) + " block");
  std::vector<std::byte> out(*rb * job.nrows);
  const uint64_t chunk = rows_per_chunk(job.ncols);
  const uint64_t nchunks = (job.nrows + chunk - 1) / chunk;
  // The error of the lowest failing chunk wins, so the message (e.g. the first non-finite
  // weight) does not depend on thread timing.
  std::exception_ptr error;
  uint64_t error_chunk = UINT64_MAX;
  std::mutex error_mu;
  uint64_t done = 0;

#pragma omp parallel num_threads(std::max(1, job.threads))
  {
    std::vector<float> buf;
#pragma omp for schedule(dynamic, 1)
    for (uint64_t c = 0; c < nchunks; ++c) {
      {
        std::lock_guard<std::mutex> lk(error_mu);
        if (error && c > error_chunk) continue;
      }
      try {
        const uint64_t r0 = c * chunk;
        const uint64_t n = std::min(chunk, job.nrows - r0);
        buf.resize(n * job.ncols);
        job.source(r0, n, buf);
        // A NaN or Inf weight would quantize to garbage blocks (or NaN scales) silently.
        if (auto bad = find_non_finite(buf))
          throw Error("non-finite weight " + float_text(buf[*bad]) + " at " +
                      element_position(r0 * job.ncols + *bad, job.ncols));
        q.quantize(buf, std::span<std::byte>(out.data() + r0 * *rb, n * *rb), static_cast<int64_t>(job.ncols),
                   job.imatrix);
#pragma omp atomic
        done += n;
        if (omp_get_thread_num() == 0 && job.on_progress) {
          uint64_t d;
#pragma omp atomic read
          d = done;
          job.on_progress(d);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu);
        if (!error || c < error_chunk) {
          error = std::current_exception();
          error_chunk = c;
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
  if (job.on_progress) job.on_progress(job.nrows);
  return out;
}

namespace {

// The encoded bytes of one tensor in flight: an anonymous mapping of its own, unmapped when
// the tensor has been written. With operator new, glibc serves multi-MB blocks from its
// per-thread arenas once its dynamic mmap threshold has risen to that size, and keeps the
// freed blocks: convert's RSS crept up by several tensors over a long model (measured: +21 MB
// on 12 layers of 8 MB tensors, tests/python/test_convert_memory.py).
class TensorBytes {
 public:
  explicit TensorBytes(uint64_t n) : n_(n) {
    if (n_ == 0) return;
    void* p = mmap(nullptr, n_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<std::byte*>(p);
  }
  ~TensorBytes() {
    if (data_) munmap(data_, n_);
  }
  TensorBytes(const TensorBytes&) = delete;
  TensorBytes& operator=(const TensorBytes&) = delete;
  std::byte* data() const { return data_; }

 private:
  uint64_t n_;
  std::byte* data_ = nullptr;
};

}  // namespace

void quantize_tensors_in_order(const std::vector<const TensorQuantizeJob*>& jobs, int threads,
                               const std::function<void(size_t, std::span<const std::byte>)>& write,
                               const std::function<void(size_t, uint64_t)>& on_progress) {
  const size_t n = jobs.size();
  // Per job: row bytes, rows per chunk, its first global chunk; chunk_begin[n] = total.
  std::vector<uint64_t> rb(n, 0), chunk(n, 1), chunk_begin(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    uint64_t nchunks = 0;
    if (const TensorQuantizeJob* j = jobs[i]) {
      const QTypeInfo& q = qtype(j->type);
      if (!q.can_quantize()) throw Error("no quantizer for type " + std::string(q.geo->name) + " yet");
      const auto r = row_bytes(j->type, j->ncols);
      if (!r) throw Error("row of " + std::to_string(j->ncols) + " is not a multiple of the " + std::string(q.geo->name) + " block");
      rb[i] = *r;
      chunk[i] = rows_per_chunk(j->ncols);
      nchunks = (j->nrows + chunk[i] - 1) / chunk[i];
    }
    chunk_begin[i + 1] = chunk_begin[i] + nchunks;
  }
  // Output of a job: allocated by its first chunk, freed once written.
  std::vector<std::unique_ptr<TensorBytes>> out(n);
  std::vector<std::once_flag> allocated(n);
  std::vector<std::atomic<uint64_t>> left(n);
  std::vector<char> done(n, 0);
  for (size_t i = 0; i < n; ++i) {
    left[i] = chunk_begin[i + 1] - chunk_begin[i];
    done[i] = left[i] == 0;
  }
  std::mutex write_mu;
  size_t next_write = 0;
  // Writes every finished tensor at the head of the queue (called with write_mu held).
  auto flush = [&] {
    while (next_write < n && done[next_write]) {
      const size_t i = next_write++;
      write(i, jobs[i] ? std::span<const std::byte>(out[i]->data(), rb[i] * jobs[i]->nrows) : std::span<const std::byte>());
      out[i].reset();
    }
  };
  // The error of the lowest failing chunk wins, so the message (e.g. the first non-finite
  // weight) does not depend on thread timing; chunks after it are skipped.
  std::exception_ptr error;
  std::atomic<int64_t> error_chunk{INT64_MAX};
  std::mutex error_mu;
  std::atomic<uint64_t> elements_done{0};
  const int64_t total = static_cast<int64_t>(chunk_begin[n]);

#pragma omp parallel num_threads(std::max(1, threads))
  {
    std::vector<float> buf;
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < total; ++g) {
      if (g > error_chunk.load(std::memory_order_relaxed)) continue;
      try {
        const size_t i = static_cast<size_t>(std::upper_bound(chunk_begin.begin(), chunk_begin.end(), static_cast<uint64_t>(g)) -
                                             chunk_begin.begin()) - 1;
        const TensorQuantizeJob& job = *jobs[i];
        const uint64_t r0 = (static_cast<uint64_t>(g) - chunk_begin[i]) * chunk[i];
        const uint64_t rows = std::min(chunk[i], job.nrows - r0);
        std::call_once(allocated[i], [&] { out[i] = std::make_unique<TensorBytes>(rb[i] * job.nrows); });
        buf.resize(rows * job.ncols);
        try {
          job.source(r0, rows, buf);
          // A NaN or Inf weight would quantize to garbage blocks (or NaN scales) silently.
          if (auto bad = find_non_finite(buf))
            throw Error("non-finite weight " + float_text(buf[*bad]) + " at " +
                        element_position(r0 * job.ncols + *bad, job.ncols));
          qtype(job.type).quantize(buf, std::span<std::byte>(out[i]->data() + r0 * rb[i], rows * rb[i]),
                                   static_cast<int64_t>(job.ncols), job.imatrix);
        } catch (const FormatError&) {
          throw;
        } catch (const Interrupted&) {
          throw;
        } catch (const Error& e) {
          if (job.label.empty()) throw;
          throw Error("tensor '" + std::string(job.label) + "': " + e.what());
        }
        const uint64_t el = elements_done.fetch_add(rows * job.ncols) + rows * job.ncols;
        if (left[i].fetch_sub(1) == 1) {
          std::lock_guard<std::mutex> lk(write_mu);
          done[i] = 1;
          flush();
        }
        if (omp_get_thread_num() == 0 && on_progress) on_progress(i, el);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu);
        if (!error || g < error_chunk.load()) {
          error = std::current_exception();
          error_chunk = g;
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
  flush();  // trailing jobs with nothing to compute
}

void dequantize_tensor_rows(GgmlType type, std::span<const std::byte> data, uint64_t ncols, uint64_t row_begin,
                            uint64_t nrows, std::span<float> out) {
  const QTypeInfo& q = qtype(type);
  if (!q.can_dequantize()) throw Error("no dequantizer for type " + std::string(q.geo->name) + " yet");
  const uint64_t rb = *row_bytes(type, ncols);
  assert(out.size() == nrows * ncols && data.size() >= (row_begin + nrows) * rb);
  q.dequantize(data.subspan(row_begin * rb, nrows * rb), out);
}

}  // namespace smolq

namespace smolq {

std::optional<uint64_t> find_non_finite_tensor(GgmlType type, std::span<const std::byte> data, uint64_t ncols) {
  const QTypeInfo& q = qtype(type);
  const auto rb = row_bytes(type, ncols);
  if (!rb || *rb == 0 || ncols == 0) return std::nullopt;
  const uint64_t nrows = data.size() / *rb;
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16)
    return find_non_finite_plain(type, data, nrows * ncols);
  if (!q.can_dequantize()) return std::nullopt;
  // Quantized blocks: a NaN/Inf scale (or an FP4/FP8 code) shows up in the dequantised rows.
  const uint64_t chunk = rows_per_chunk(ncols);
  std::vector<float> buf;
  for (uint64_t r0 = 0; r0 < nrows; r0 += chunk) {
    const uint64_t n = std::min(chunk, nrows - r0);
    buf.resize(n * ncols);
    q.dequantize(data.subspan(r0 * *rb, n * *rb), buf);
    if (auto bad = find_non_finite(buf)) return r0 * ncols + *bad;
  }
  return std::nullopt;
}

}  // namespace smolq
