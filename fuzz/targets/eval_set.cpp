// Fuzz target over evaluation-set manifests (eval/eval_set.h): parts evalset.json | a.txt |
// chat.txt written into one scratch folder, read_eval_set on it, and the chat-turn parser on
// the third part.
#include <set>

#include "eval/eval_set.h"
#include "formats/error.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"

namespace smolq::fuzz {

int fuzz_eval_set(const uint8_t* data, size_t size) {
  const auto parts = split_parts(data, size, 3);
  const std::string manifest = write_scratch("evalset/evalset.json", parts[0]);
  write_scratch("evalset/a.txt", parts[1]);
  write_scratch("evalset/chat.txt", parts[2]);
  // What the sweep assumes of an accepted set: categories with unique valid names, files that
  // exist, contexts and chunk counts in range.
  try {
    const EvalSet s = read_eval_set(manifest);
    if (s.categories.empty()) fuzz_fail("an accepted set has no categories");
    std::set<std::string> names;
    for (const auto& c : s.categories) {
      if (!names.insert(c.name).second) fuzz_fail("category '" + c.name + "' accepted twice");
      if (c.files.empty()) fuzz_fail("category '" + c.name + "' has no files");
      if (c.n_ctx < 16 || (c.n_chunks != -1 && c.n_chunks < 1)) fuzz_fail("category '" + c.name + "': ctx/chunks out of range");
    }
  } catch (const Error&) {
  }
  // Turns alternate user / assistant, starting with the user.
  for (const auto& conv : parse_chat_file(std::string(parts[2])))
    for (size_t i = 0; i < conv.size(); ++i)
      if (conv[i].role != (i % 2 == 0 ? "user" : "assistant")) fuzz_fail("chat turns do not alternate");
  return 0;
}

}  // namespace smolq::fuzz
