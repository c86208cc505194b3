// Fuzz target over chat templates: the Jinja2 text a model ships in tokenizer_config.json's
// `chat_template` or GGUF's `tokenizer.chat_template`, which `smolq verify` parses and renders
// (text/chat_template*.cpp). A template is a small program from the
// internet, so besides malformed syntax the interesting inputs are deep nesting, huge loops
// and values that grow without bound: each must end in a TemplateError, not a stack overflow,
// a hang or an allocation the size of the machine.
//
// Input: one flags byte, then the template source.
//   bit 0  add_generation_prompt
//   bit 1  a system message first (templates branch on messages[0].role)
//   bit 2  trim_blocks / lstrip_blocks off (Hugging Face turns both on; the parser has both paths)
#include "formats/error.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"
#include "text/chat_template.h"

namespace smolq::fuzz {

int fuzz_chat_template(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string_view source(reinterpret_cast<const char*>(data) + 1, size - 1);
  // The conversation `smolq verify` renders: a user turn, an assistant reply, a second user turn.
  std::vector<ChatMessage> messages;
  if (flags & 2) messages.push_back({"system", "You are terse."});
  messages.push_back({"user", "What is 2+2?"});
  messages.push_back({"assistant", "4"});
  messages.push_back({"user", "And in French? caf\xc3\xa9 {{ not code }}"});
  ChatTemplateOptions options;
  if (flags & 4) options.trim_blocks = options.lstrip_blocks = false;
  try {
    const ChatTemplate tpl(source, options);
    (void)tpl.apply(messages, (flags & 1) != 0, "<|bos|>", "<|eos|>");
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace smolq::fuzz
