#!/usr/bin/env python3
"""Re-assemble the bundled evaluation set testdata/evalset (eval/eval_set.h) from text that
ships offline: WikiText-2 (../shared/assets), Debian manual pages in several languages and
scripts, source files of Debian packages, FAQs of Debian packages (as chat turns).

Every text is an excerpt cut at a line boundary, so the set stays small (tens of KB per
category). The evaluation text (`path`) and the calibration text (`calib`) of a category never
share a source file. testdata/evalset/SOURCES.tsv records each file's origin (path, Debian
package and version, bytes); testdata/README.md states the licences.

Usage: python3 scripts/make_evalset.py [--check]   (--check: fail if the output would change)

Rendering the manual pages needs groff; the result depends on their
versions, which SOURCES.tsv records: the committed files, not this script, are the set.
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "testdata", "evalset")
WIKI = os.path.join(ROOT, "..", "shared", "assets", "wikitext-2-raw")
if not os.path.isdir(WIKI):
    WIKI = "/work/shared/assets/wikitext-2-raw"

sources = []  # (output file, source, package, version, bytes)


def package_of(path):
    """(package, version) owning `path` (tried as given, resolved, and without /usr for usrmerge)."""
    for p in (path, os.path.realpath(path), re.sub(r"^/usr(?=/s?bin/|/lib/)", "", path)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":")[0].strip()
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
            return pkg, ver.strip() or "-"
    return "-", "-"


def cut(text, max_bytes):
    """The longest prefix of whole lines within max_bytes (UTF-8)."""
    out, n = [], 0
    for line in text.splitlines(keepends=True):
        b = len(line.encode("utf-8"))
        if n + b > max_bytes:
            break
        out.append(line)
        n += b
    return "".join(out)


def squeeze(text):
    """Strip trailing spaces and collapse runs of blank lines."""
    lines = [l.rstrip() for l in text.splitlines()]
    out = []
    for l in lines:
        if l == "" and (not out or out[-1] == ""):
            continue
        out.append(l)
    return "\n".join(out).strip("\n") + "\n"


def render_man(path):
    # groff directly (man-db's pipeline can stall on a pipe): tbl, UTF-8 input (-k -Kutf8),
    # 80 columns, no hyphenation, no SGR / overstrike / underline codes.
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8")
    src = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    r = subprocess.run(["groff", "-t", "-k", "-Kutf8", "-mandoc", "-Tutf8", "-rLL=80n", "-rHY=0", "-dAD=l", "-P-cbu"],
                       input=src, capture_output=True, env=env, check=True, timeout=60)
    text = r.stdout.decode("utf-8", errors="replace")
    text = re.sub(r".\x08", "", text)  # overstrike bold / underline, if any
    lines = text.splitlines()
    # Drop the header and footer lines (NAME(1)  title  NAME(1)) and the indentation.
    if lines and re.match(r"^\S+\(\d\w*\)", lines[0]):
        lines = lines[1:]
    if lines and re.search(r"\S+\(\d\w*\)\s*$", lines[-1]):
        lines = lines[:-1]
    # Justification pads lines with runs of spaces (groff ignores -dAD=l for some CJK pages).
    return squeeze("\n".join(re.sub(r"(?<=\S) {2,}", " ", l.strip()) for l in lines))


def write(rel, text, origin):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    for src in origin:
        pkg, ver = package_of(src) if src.startswith("/usr") else ("-", "-")
        sources.append((rel, src if src.startswith("/usr") else os.path.relpath(src, ROOT + "/.."), pkg, ver))


# ---- English prose: WikiText-2 ----------------------------------------------------------------
def wikitext():
    # Cut at an article boundary (" = Title = " lines) so the excerpt is whole articles.
    def articles(name, max_bytes):
        text = open(os.path.join(WIKI, name), encoding="utf-8").read()
        starts = [m.start() for m in re.finditer(r"^ = [^=].* = \n", text, re.M)]
        end = max(s for s in starts if len(text[:s].encode()) <= max_bytes)
        return text[:end]
    write("wikitext/wiki.test.excerpt.raw", articles("wiki.test.raw", 64_000), [os.path.join(WIKI, "wiki.test.raw")])
    write("wikitext/calib/wiki.valid.excerpt.raw", articles("wiki.valid.raw", 40_000), [os.path.join(WIKI, "wiki.valid.raw")])


# ---- code in several languages ----------------------------------------------------------------
CODE_EVAL = [  # (source, output name, lines to skip (licence header), bytes)
    ("/usr/include/zlib.h", "zlib.h", 30, 12_000),
    ("/usr/include/c++/12/bits/stl_algobase.h", "stl_algobase.h", 56, 10_000),
    ("/usr/lib/python3.11/textwrap.py", "textwrap.py", 0, 10_000),
    ("/usr/bin/ldd", "ldd.sh", 0, 6_000),
    ("/usr/share/perl/5.36.0/Text/Wrap.pm", "Wrap.pm", 0, 5_000),
]
CODE_CALIB = [
    ("/usr/include/zstd.h", "zstd.h", 10, 8_000),
    ("/usr/include/c++/12/bits/stl_heap.h", "stl_heap.h", 55, 6_000),
    ("/usr/lib/python3.11/shlex.py", "shlex.py", 0, 8_000),
    ("/usr/bin/zdiff", "zdiff.sh", 0, 4_000),
    ("/usr/share/perl/5.36.0/Text/Abbrev.pm", "Abbrev.pm", 0, 3_000),
]


def code():
    for specs, sub in ((CODE_EVAL, "code/eval"), (CODE_CALIB, "code/calib")):
        for src, name, skip, nbytes in specs:
            text = open(src, encoding="utf-8").read()
            text = "".join(text.splitlines(keepends=True)[skip:])
            write(f"{sub}/{name}", cut(text, nbytes), [src])


# ---- non-Latin scripts: manual pages ----------------------------------------------------------
LANGS = {  # language folder -> category name
    "ja": "japanese", "ru": "russian", "zh_CN": "chinese", "ko": "korean",
}


def man_pages(lang):
    pages = []
    for sec in sorted(os.listdir(f"/usr/share/man/{lang}")):
        d = f"/usr/share/man/{lang}/{sec}"
        if not sec.startswith("man") or not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p):
                pages.append(p)
    return pages


def scripts():
    for lang, cat in LANGS.items():
        pages = man_pages(lang)
        # Even pages evaluate, odd pages calibrate; each side up to its byte budget.
        for part, sel, budget in (("eval", pages[0::2], 28_000), ("calib", pages[1::2], 14_000)):
            text, used = "", []
            for p in sel:
                t = render_man(p)
                if len((text + t).encode()) > budget:
                    if not text:
                        text, used = cut(t, budget), [p]
                    continue
                text += ("\n" if text else "") + t
                used.append(p)
            write(f"{cat}/{part}.txt", text, used)


# ---- chat: FAQs of Debian packages as user / assistant turns -----------------------------------
def faq_zlib():
    text = gzip.open("/usr/share/doc/zlib1g-dev/FAQ.gz", "rt", encoding="utf-8").read()
    parts = re.split(r"^ ?\d+\. ", text, flags=re.M)[1:]
    pairs = []
    for p in parts:
        q, _, a = p.partition("\n\n")
        pairs.append((" ".join(q.split()), dedent_block(a)))
    return pairs


def faq_procps():
    text = gzip.open("/usr/share/doc/procps/FAQ.gz", "rt", encoding="utf-8").read()
    pairs = []
    for block in re.split(r"\n(?=\S)", text):
        q, _, a = block.partition("\n")
        if q.strip().endswith("?") and a.strip():
            pairs.append((q.strip(), dedent_block(a)))
    return pairs


def faq_mandb():
    text = open("/usr/share/doc/man-db/FAQ", encoding="utf-8").read()
    pairs = []
    blocks = re.split(r"^(.+)\n=+\n", text, flags=re.M)
    for i in range(1, len(blocks) - 1, 2):
        pairs.append((blocks[i].strip(), dedent_block(blocks[i + 1])))
    return pairs


def faq_pod(path):
    """=item / =head2 paragraphs that ask a question, with the text up to the next command."""
    text = open(path, encoding="utf-8").read()
    pairs = []
    for block in re.split(r"^(?==[a-z])", text, flags=re.M):
        head, _, body = block.partition("\n")
        m = re.match(r"=(?:item|head2|head3)\s+(.+\?)\s*$", head)
        a = re.sub(r"[BCILF]<([^<>]*)>", r"\1", body)
        if m and a.strip():
            pairs.append((m.group(1).strip(), dedent_block(a)))
    return pairs


def dedent_block(a):
    lines = a.strip("\n").splitlines()
    ind = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
    return squeeze("\n".join(l[ind:] for l in lines)).strip()


def conversations(pairs, per_conv, budget):
    """Conversations of `per_conv` question/answer exchanges, `===` between them."""
    convs, used = [], 0
    for i in range(0, len(pairs), per_conv):
        turns = []
        for q, a in pairs[i:i + per_conv]:
            turns += [q, a]
        c = "\n---\n".join(turns) + "\n"
        if used + len(c.encode()) > budget:
            break
        convs.append(c)
        used += len(c.encode()) + 4
    return "===\n".join(convs)


def chat():
    write("chat/eval/zlib-faq.txt", conversations(faq_zlib(), 2, 12_000), ["/usr/share/doc/zlib1g-dev/FAQ.gz"])
    write("chat/eval/procps-faq.txt", conversations(faq_procps(), 2, 10_000), ["/usr/share/doc/procps/FAQ.gz"])
    write("chat/eval/man-db-faq.txt", conversations(faq_mandb(), 1, 12_000), ["/usr/share/doc/man-db/FAQ"])
    mm = "/usr/share/perl/5.36.0/ExtUtils/MakeMaker/FAQ.pod"
    io = "/usr/share/perl/5.36.0/IO/Compress/FAQ.pod"
    write("chat/calib/makemaker-faq.txt", conversations(faq_pod(mm), 2, 9_000), [mm])
    write("chat/calib/io-compress-faq.txt", conversations(faq_pod(io), 2, 7_000), [io])


# ---- long documents ---------------------------------------------------------------------------
def long_docs():
    write("long/bash.1.txt", cut(render_man("/usr/share/man/man1/bash.1.gz"), 64_000), ["/usr/share/man/man1/bash.1.gz"])
    write("long/calib/tmux.1.txt", cut(render_man("/usr/share/man/man1/tmux.1.gz"), 24_000), ["/usr/share/man/man1/tmux.1.gz"])


MANIFEST = {
    "name": "smolq default",
    "description": "Bundled evaluation set: English prose, code, four non-Latin scripts, chat turns, long "
                   "documents. Assembled by scripts/make_evalset.py; provenance and licences in testdata/README.md.",
    "categories": [
        {"name": "wikitext", "description": "English prose: WikiText-2 test articles",
         "path": "wikitext/wiki.test.excerpt.raw", "calib": "wikitext/calib", "ctx": 512},
        {"name": "code", "description": "C, C++, Python, shell and Perl source from Debian packages",
         "path": "code/eval", "calib": "code/calib", "ctx": 512},
        {"name": "japanese", "description": "Japanese manual pages (kana, kanji)",
         "path": "japanese/eval.txt", "calib": "japanese/calib.txt", "ctx": 512},
        {"name": "russian", "description": "Russian manual pages (Cyrillic)",
         "path": "russian/eval.txt", "calib": "russian/calib.txt", "ctx": 512},
        {"name": "chinese", "description": "Simplified Chinese manual pages (Han)",
         "path": "chinese/eval.txt", "calib": "chinese/calib.txt", "ctx": 512},
        {"name": "korean", "description": "Korean manual pages (Hangul)",
         "path": "korean/eval.txt", "calib": "korean/calib.txt", "ctx": 512},
        {"name": "chat", "description": "FAQs of Debian packages as user/assistant turns in the chat template",
         "path": "chat/eval", "calib": "chat/calib", "chat": True, "ctx": 512},
        {"name": "long", "description": "one long document (the bash manual) in 4096-token chunks",
         "path": "long/bash.1.txt", "calib": "long/calib", "ctx": 4096},
    ],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args()
    wikitext()
    code()
    scripts()
    chat()
    long_docs()
    with open(os.path.join(OUT, "evalset.json"), "w") as f:
        json.dump(MANIFEST, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(OUT, "SOURCES.tsv"), "w") as f:
        f.write("file\tsource\tdebian package\tversion\n")
        for row in sources:
            f.write("\t".join(row) + "\n")
    total = 0
    for dirpath, _, files in os.walk(OUT):
        for n in files:
            total += os.path.getsize(os.path.join(dirpath, n))
    print(f"wrote {OUT}: {len(sources)} sources, {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
