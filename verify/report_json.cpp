// report.json: every number of the sweep. Each quant carries `kld_report`, the object
// `smolq perplexity QUANT --base BASE --json` prints (eval/metrics.h kld_report_json), next
// to the summary fields derived from it.
#include "verify/report_writers.h"
#include "verify/sweep_cache.h"

namespace smolq {
namespace {

void generations(JsonWriter& j, const std::vector<Generation>& g) {
  j.begin_array();
  for (const auto& x : g) j.begin_object().key("text").value(x.text).key("n_tokens").value(x.n_tokens).key("stopped").value(x.stopped).end_object();
  j.end_array();
}

}  // namespace

std::string report_json(const SweepResult& r) { return report_json(r, {}); }

std::string report_json(const SweepResult& r, const std::function<void(JsonWriter&)>& extra) {
  JsonWriter j(2, 10);
  j.begin_object();
  j.key("tool").value("smolq verify").key("version").value(SMOLQ_VERSION);
  j.key("model").begin_object().key("path").value(r.model).key("name").value(report::model_name(r));
  j.key("description").value(r.model_desc).key("n_params").value(r.n_params).key("weight_bytes").value(r.model_bytes);
  j.key("n_layers").value(r.n_layers).key("tied_output").value(r.tied_output).end_object();

  j.key("evaluation").begin_object().key("text").value(r.eval_text).key("description").value(r.eval_desc);
  j.key("tokens").value(r.eval_tokens).key("n_ctx").value(r.eval.n_ctx).key("n_chunks").value(r.n_chunks);
  j.key("positions").value(r.positions).key("add_bos").value(r.eval.add_bos).key("bos_id").value(r.eval.bos_id);
  j.key("n_batch").value(r.eval.n_batch).key("threads").value(r.eval.n_threads).end_object();
  j.key("imatrix").value(r.imatrix_desc);

  j.key("baseline").begin_object().key("ppl").value(r.base_ppl).key("ppl_uncertainty").value(r.base_ppl_unc);
  j.key("eval_seconds").value(r.base_eval_seconds).key("generations");
  generations(j, r.base_generations);
  j.end_object();

  j.key("prompt_format").value(r.prompt_format).key("prompts").begin_array();
  for (size_t i = 0; i < r.prompts.size(); ++i)
    j.begin_object().key("user").value(r.prompts[i]).key("text").value(i < r.prompt_texts.size() ? r.prompt_texts[i] : "").end_object();
  j.end_array();

  j.key("quants").begin_array();
  for (size_t i = 0; i < r.quants.size(); ++i) {
    const QuantRow& q = r.quants[i];
    j.begin_object().key("label").value(q.label).key("file_type").value(q.file_type).key("path").value(q.path);
    j.key("built").value(q.built).key("imatrix_used").value(q.imatrix_used);
    j.key("file_size").value(q.file_size).key("tensor_bytes").value(q.tensor_bytes).key("n_elements").value(q.n_elements);
    j.key("bpw").value(q.bpw).key("tensor_types").begin_object();
    for (const auto& [t, n] : q.tensor_types) j.key(t).value(n);
    j.end_object();
    j.key("build_seconds").value(q.build_seconds).key("build_cached").value(q.build_cached);
    j.key("eval_seconds").value(q.eval_seconds).key("chunks_computed").value(q.chunks_computed).key("chunks_cached").value(q.chunks_cached);
    j.key("ppl").value(q.kld.ppl_q.value).key("ppl_uncertainty").value(q.kld.ppl_q.unc);
    j.key("delta_ppl_percent").value(report::delta_ppl_percent(q));
    j.key("kld_mean").value(q.kld.kld.value).key("kld_median").value(report::kld_percentile(q, "median"));
    j.key("kld_p99").value(report::kld_percentile(q, "99.0")).key("same_top_percent").value(100.0 * q.kld.same_top.value);
    j.key("rms_p_diff_percent").value(100.0 * q.kld.rms_p_diff.value);
    j.key("rms_logit_drift").value(q.kld.rms_logit_drift).key("max_logit_drift").value(q.kld.max_logit_drift);
    j.key("pareto").value(report::on_pareto(r, i)).key("recommended").value(report::is_recommended(r, i));
    j.key("kld_report").raw(kld_report_json(q.kld));
    j.key("embd_rel_error").value(q.embd_rel).key("output_rel_error").value(q.output_rel).key("layer_rel_error").begin_array();
    for (double v : q.layer_rel) j.value(v);
    j.end_array().key("tensors").begin_array();
    for (const auto& t : q.tensors)
      j.begin_object().key("name").value(t.name).key("layer").value(t.layer).key("type").value(t.type)
          .key("n_elements").value(t.n_elements).key("wmse").value(t.wmse).key("rel_error").value(t.rel)
          .key("importance_weighted").value(t.weighted).end_object();
    j.end_array().key("generations");
    generations(j, q.generations);
    j.end_object();
  }
  j.end_array();

  j.key("kld_budget").value(r.kld_budget).key("recommended");
  if (r.recommended) j.value(r.quants[*r.recommended].label);
  else j.null();
  j.key("pareto").begin_array();
  for (size_t p : r.pareto) j.value(r.quants[p].label);
  j.end_array().key("notes").begin_array();
  for (const auto& n : r.notes) j.value(n);
  j.end_array();
  j.key("cache").begin_object().key("builds_done").value(r.cache.builds_done).key("builds_reused").value(r.cache.builds_reused);
  j.key("chunks_computed").value(r.cache.chunks_computed).key("chunks_reused").value(r.cache.chunks_reused);
  j.key("base_chunks_computed").value(r.cache.base_chunks_computed).key("base_chunks_reused").value(r.cache.base_chunks_reused);
  j.key("generations_done").value(r.cache.generations_done).key("generations_reused").value(r.cache.generations_reused);
  j.key("imatrix_reused").value(r.cache.imatrix_reused).end_object();
  j.key("seconds").value(r.seconds);
  if (extra) extra(j);
  j.end_object();
  return j.str() + "\n";
}

}  // namespace smolq
