// Unit tests of the front door's lower layers: "did you mean" (formats/suggest.h), model
// references and the Hugging Face cache layout (formats/hf_cache.h), model-card front matter
// (convert/model_card.h) and llama.cpp's naming rules (convert/naming.h). The end-to-end
// comparison with gguf-py's Metadata.load is tests/python/test_hf_cache.py.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "convert/model_card.h"
#include "convert/naming.h"
#include "formats/error.h"
#include "formats/hf_cache.h"
#include "formats/suggest.h"
#include "temp_dir.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq-naming-") {}
};

// A repo laid out as huggingface_hub writes it: blobs, a snapshot of symlinks, refs/main.
fs::path make_cache_repo(const fs::path& cache, const std::string& folder, const std::string& commit) {
  const fs::path repo = cache / folder;
  write(repo / "blobs" / "0123abcd", "{\"model_type\": \"llama\"}");
  fs::create_directories(repo / "snapshots" / commit);
  fs::create_symlink("../../blobs/0123abcd", repo / "snapshots" / commit / "config.json");
  write(repo / "refs" / "main", commit);
  return repo;
}

}  // namespace

TEST_SUITE("test_naming") {
  TEST_CASE("edit distance and the nearest name") {
    CHECK(edit_distance("quantise", "quantize") == 1);
    CHECK(edit_distance("verfiy", "verify") == 1);  // adjacent swap
    CHECK(edit_distance("", "abc") == 3);
    const std::vector<std::string> commands{"convert", "quantize", "inspect", "estimate", "perplexity", "imatrix", "verify"};
    CHECK(nearest_name("quantise", commands) == "quantize");
    CHECK(nearest_name("inspcet", commands) == "inspect");
    CHECK(nearest_name("xyz", commands).empty());
    const std::vector<std::string> types{"Q4_0", "Q4_K_S", "Q4_K_M", "IQ4_XS", "Q8_0"};
    CHECK(nearest_name("Q4KM", types) == "Q4_K_M");
    CHECK(nearest_name("q4_km", types) == "Q4_K_M");
    CHECK(nearest_name("Q4_K_MM", types) == "Q4_K_M");
    CHECK(nearest_name("iq4xs", types) == "IQ4_XS");
    const std::vector<std::string> opts{"--threads", "--ctx-size", "--output", "-t"};
    CHECK(nearest_name("--thread", opts) == "--threads");
    CHECK(nearest_name("--ctxsize", opts) == "--ctx-size");
    CHECK(did_you_mean("--ouput", opts) == " (did you mean '--output'?)");
  }

  TEST_CASE("model ids split as llama.cpp's get_model_id_components does") {
    ModelIdParts p = split_model_id("HuggingFaceTB/SmolLM2-135M-Instruct", 134515008);
    CHECK(p.full_name == "SmolLM2-135M-Instruct");
    CHECK(p.organization == "HuggingFaceTB");
    CHECK(p.basename == "SmolLM2");
    CHECK(p.size_label == "135M");
    CHECK(p.finetune == "Instruct");
    CHECK_FALSE(p.version);
    p = split_model_id("mistralai/Mistral-7B-Instruct-v0.2", 7241732096);
    CHECK(p.basename == "Mistral");
    CHECK(p.size_label == "7B");
    CHECK(p.finetune == "Instruct");
    CHECK(p.version == "v0.2");
    // A size far from the parameter count is a context length: part of the finetune, lower case.
    p = split_model_id("org/Model-7B-32K", 7000000000);
    CHECK(p.size_label == "7B");
    CHECK(p.finetune == "32k");
    // bloom's 7b1 notation; a name with nothing but words is too ambiguous for a basename.
    CHECK(split_model_id("bigscience/bloom-7b1", 7069016064).size_label == "7.1B");
    CHECK_FALSE(split_model_id("my_model", 1000).basename);
    CHECK(split_model_id("./local", 0).organization == std::nullopt);
    CHECK(id_to_title("smollm2-135m-instruct") == "Smollm2 135m Instruct");
    CHECK(id_to_title("SmolLM2-135M-Instruct") == "SmolLM2 135M Instruct");
    CHECK(id_to_title("llama-v2") == "Llama v2");
  }

  TEST_CASE("model card front matter: YAML with lists, tabs and a closing line") {
    TempDir t;
    write(t.path / "README.md",
          "---\nlicense: apache-2.0\nlanguage:\n- en\n- fr\nbase_model: HuggingFaceTB/SmolLM2-135M\n"
          "tags:\n\t- chat\ndatasets:\n  - HuggingFaceTB/smoltalk\n---\n# Title\nlicense: not-this\n");
    const MetaTree card = read_model_card(t.path.string());
    REQUIRE(card.is_map());
    CHECK(card.get("license")->scalar == "apache-2.0");
    REQUIRE(card.get("language")->is_list());
    CHECK(card.get("language")->items.size() == 2);
    CHECK(card.get("tags")->items.at(0).scalar == "chat");
    write(t.path / "README.md", "no front matter\n---\nlicense: mit\n---\n");
    CHECK(read_model_card(t.path.string()).is_null());
    write(t.path / "README.md", "---\nlicense: [unclosed\n---\n");
    CHECK_THROWS_AS(read_model_card(t.path.string()), FormatError);
  }

  TEST_CASE("metadata: card, repo id, override, and the default file name") {
    TempDir t;
    const fs::path dir = t.path / "snapshot-abc";
    write(dir / "README.md",
          "---\nlicense: apache-2.0\nlanguage: [en]\npipeline_tag: text-generation\ntags: [safetensors]\n"
          "base_model:\n- HuggingFaceTB/SmolLM2-135M\ndatasets: [HuggingFaceTB/smoltalk]\n---\n");
    NamingInputs in;
    in.repo_id = "HuggingFaceTB/SmolLM2-135M-Instruct";
    ModelMetadata m = load_model_metadata(dir.string(), in, 134515008);
    CHECK(m.field_or("name", "") == "SmolLM2 135M Instruct");
    CHECK(m.field_or("organization", "") == "HuggingFaceTB");
    CHECK(m.field_or("basename", "") == "SmolLM2");
    CHECK(m.field_or("size_label", "") == "135M");
    CHECK(m.field_or("license", "") == "apache-2.0");
    REQUIRE(m.base_models);
    CHECK(m.base_models->at(0) == MetaEntry{{"name", "SmolLM2 135M"}, {"organization", "HuggingFaceTB"},
                                            {"repo_url", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M"}});
    CHECK(*m.tags == std::vector<std::string>{"safetensors", "text-generation"});
    CHECK(*m.languages == std::vector<std::string>{"en"});
    GgufMetadata meta;
    write_general_metadata(m, "llama", meta);
    CHECK(meta.get_string("general.dataset.0.name") == "Smoltalk");
    CHECK(default_output_name(meta, "Q4_K_M") == "SmolLM2-135M-Instruct-Q4_K_M.gguf");
    CHECK(default_output_name(meta, "f16") == "SmolLM2-135M-Instruct-F16.gguf");

    write(t.path / "override.json", R"({"general.name": "Tiny", "general.version": "v1.1", "general.tags": ["a"],
                                       "general.base_models": [{"name": "X", "repo_url": "https://example.org/x"}]})");
    in.metadata_path = (t.path / "override.json").string();
    m = load_model_metadata(dir.string(), in, 134515008);
    CHECK(m.field_or("name", "") == "Tiny");
    CHECK(m.field_or("version", "") == "v1.1");
    CHECK(*m.tags == std::vector<std::string>{"a"});
    CHECK(m.base_models->size() == 1);
    in.name_override = "Given";
    CHECK(load_model_metadata(dir.string(), in, 134515008).field_or("name", "") == "Given");
  }

  TEST_CASE("untrusted cards: alias bombs are bounded, names cannot leave the folder") {
    TempDir t;
    std::string bomb = "---\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 9; ++i) {
      bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
      for (int k = 0; k < 10; ++k) bomb += (k ? ", *a" : "*a") + std::to_string(i - 1);
      bomb += "]\n";
    }
    write(t.path / "README.md", bomb + "---\n");
    CHECK_THROWS_AS(read_model_card(t.path.string()), FormatError);
    write(t.path / "README.md", "---\nbasename: ../../etc\nfinetune: ../x\nversion: a/b\\c\n---\n");
    GgufMetadata meta;
    write_general_metadata(load_model_metadata(t.path.string(), {}, 1000), "llama", meta);
    const std::string out = default_output_name(meta, "q8_0");
    CHECK(out == "model..-..-etc-1.0K-..-x-a-b-c-Q8_0.gguf");
    CHECK(out.find('/') == std::string::npos);
  }

  TEST_CASE("model references: paths, cache folders, snapshots and repo ids") {
    TempDir t;
    const std::string commit = "9c1f2a4b8d0e6f3a5b7c9d1e2f4a6b8c0d2e4f6a";
    const fs::path repo = make_cache_repo(t.path / "hub", "models--HuggingFaceTB--SmolLM2-135M-Instruct", commit);
    const fs::path snap = repo / "snapshots" / commit;

    ModelRef r = resolve_model_ref(repo.string());
    CHECK(r.repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct");
    CHECK(fs::equivalent(r.path, snap));
    CHECK(r.revision == commit);
    r = resolve_model_ref(snap.string() + "/");
    CHECK(r.repo_id == "HuggingFaceTB/SmolLM2-135M-Instruct");
    CHECK(r.display_name() == "SmolLM2-135M-Instruct");

    ::setenv("HF_HUB_CACHE", (t.path / "hub").c_str(), 1);
    r = resolve_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct");
    CHECK(fs::equivalent(r.path, snap));
    CHECK(resolve_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct@9c1f2a4").revision == commit);
    CHECK(resolve_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct@main").revision == commit);
    try {
      resolve_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct@v2");
      FAIL("an unknown revision must be an error");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()).find("snapshots: " + commit) != std::string::npos);
    }
    try {
      resolve_model_ref("HuggingFaceTB/SmolLM3-3B");
      FAIL("a repo in no cache must be an error");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()).find((t.path / "hub" / "models--HuggingFaceTB--SmolLM3-3B").string()) != std::string::npos);
    }
    ::unsetenv("HF_HUB_CACHE");
    CHECK_FALSE(looks_like_repo_id("./x"));
    CHECK_FALSE(looks_like_repo_id("a/b/c"));
    CHECK(looks_like_repo_id("a/b@rev"));
    // A plain folder: no repo id, named after its real name even when typed as ".".
    fs::create_directories(t.path / "MyModel-1B");
    const fs::path old = fs::current_path();
    fs::current_path(t.path / "MyModel-1B");
    r = resolve_model_ref(".");
    CHECK(r.repo_id.empty());
    CHECK(r.display_name() == "MyModel-1B");
    fs::current_path(old);
  }
}
