// Evaluation sets: several categories of text (prose, code, other scripts, chat, long
// documents) measured in one run, so a quant's damage can be seen per kind of input
// (`smolq verify --eval-set`, `smolq imatrix --eval-set`).
//
// A set is a folder holding `evalset.json` and the texts it names:
//
//   {
//     "name": "smolq default",                      // optional: shown in reports
//     "categories": [
//       { "name": "wikitext",                       // required: [A-Za-z0-9_.-]+, unique
//         "path": "wikitext/wiki.test.excerpt.raw", // required: a text file, or a folder whose
//                                                   //   *.txt / *.raw / other regular files are
//                                                   //   read in name order
//         "calib": "wikitext/wiki.valid.excerpt.raw", // optional: calibration text (file or
//                                                   //   folder), disjoint from `path`: what
//                                                   //   imatrix collection over the set reads
//         "chat": false,                            // optional: wrap as user/assistant turns in
//                                                   //   the model's chat template
//         "ctx": 512,                               // optional (512): tokens per chunk; capped
//                                                   //   by the model's trained context
//         "chunks": 8,                              // optional (all): at most this many chunks
//         "description": "English prose" }          // optional
//     ]
//   }
//
// Paths are relative to the folder (they may not leave it). Texts of a plain category are
// joined with a blank line between files and tokenized at once, as llama-perplexity tokenizes
// its -f file (a category of one file gives exactly `smolq perplexity -f FILE`'s tokens).
// In a chat category a file holds conversations separated by lines holding only `===`; the
// turns of a conversation are separated by lines holding only `---` and alternate user,
// assistant, user, ... starting with the user. Every conversation goes through the chat
// template (no generation prompt) and the token ids of all of them are concatenated.
// Unknown fields are refused (a typo would silently change the measurement), with the file and
// the field in the message.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/model.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace smolq {

struct EvalCategory {
  std::string name;
  std::string description;
  std::string path;                      // as written in the manifest (relative)
  std::vector<std::string> files;        // resolved evaluation files, in order
  std::vector<std::string> calib_files;  // resolved calibration files (may be empty)
  bool chat = false;
  int64_t n_ctx = 512;
  int64_t n_chunks = -1;                 // -1: every whole chunk
};

struct EvalSet {
  std::string dir;       // the folder
  std::string manifest;  // <dir>/evalset.json
  std::string name;
  std::vector<EvalCategory> categories;
};

// The bundled set (testdata/evalset of the source tree this binary was built from).
std::string default_eval_set_dir();

// Reads DIR/evalset.json (or a manifest file given directly). `default` names the bundled set.
// Throws FormatError naming the manifest and the field on a bad manifest, Error on missing files.
EvalSet read_eval_set(const std::string& dir_or_manifest);

// One category's tokens for one model.
struct CategoryTokens {
  std::vector<int32_t> ids;
  bool add_bos = false;  // as EvalTokens: each chunk starts with bos_id
  int32_t bos_id = -1;
  int64_t n_ctx = 0;     // the category's ctx capped by the model's trained context
  bool templated = false;  // chat turns went through the model's chat template
  std::string note;        // why a chat category fell back to plain text, or a ctx cap
};

// Which text of the category to read.
enum class CategoryText { kEval, kCalib };

// Tokenizes a category for `model` with `tok`. `chat_template` is the template source to use
// for chat categories (empty: the model has none; the turns are then joined as plain text and
// `note` says so). Throws Error when kCalib is asked of a category without calibration text.
CategoryTokens tokenize_category(const Model& model, const Tokenizer& tok, const std::string& chat_template,
                                 const EvalCategory& cat, CategoryText which);

// Whole chunks of `n_ctx` tokens from each stream, taken round-robin (chunk 0 of every stream,
// then chunk 1, ...), so that the first N chunks sample every category; partial chunks at a
// stream's end are dropped, and no chunk mixes two streams. For calibration over a set.
std::vector<int32_t> interleave_chunks(const std::vector<std::vector<int32_t>>& streams, int64_t n_ctx);

// The turns of one conversation (split at `---` lines, alternating user / assistant).
std::vector<ChatMessage> parse_chat_turns(const std::string& text);
// The conversations of one chat file (split at `===` lines), each parsed by parse_chat_turns;
// empty conversations are dropped.
std::vector<std::vector<ChatMessage>> parse_chat_file(const std::string& text);

}  // namespace smolq
