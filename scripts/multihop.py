#!/usr/bin/env python3
"""Builds and checks data/multihop/, the labelled multi-hop question set for GraphRAG retrieval.

The corpus is the 174 documents of data/python-faq/faq.json (referenced, not copied) plus
documents.json: sections of other pages of the Python 3.11 documentation as Debian ships it
(package python3.11-doc, the reStructuredText sources of docs.python.org under _sources/),
converted to plain text like the FAQ (scripts/python-faq.py's conversion, extended for the
directives those pages use) and trimmed to at most MAX_TEXT characters at a paragraph break.

questions.json, written by hand, holds the questions: each joins two documents through a named
entity (the bridge) that the question itself does not name. This script checks every question:
each hop's quote (20-200 characters) occurs exactly once in its document's text, inside one
chunk of the default chunking (1,000 characters, 100 overlap); the bridge occurs in both
documents (case-sensitively, a line break standing for a space); the question does not name
it (case-insensitively); the two documents differ; and there are at least MIN_QUESTIONS
questions. It prints the counts and exits non-zero on any violation.

    scripts/multihop.py [DIR]   # DIR: an extracted python3.11-doc; default: the corpus cache of
                                # scripts/bench-search.sh, downloaded there if absent
    scripts/multihop.py --check # only check questions.json against documents.json (no package)
"""
import gzip, importlib.util, json, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "multihop")
FAQ = os.path.join(HERE, "..", "data", "python-faq", "faq.json")
PACKAGE = "python3.11-doc"
VERSION = "3.11.2-6+deb12u7"  # the version documents.json was built from
SOURCES = "usr/share/doc/python3.11/html/_sources"
MAX_TEXT = 6000
CHUNK, OVERLAP = 1000, 100  # the research documents' default chunking
MIN_QUESTIONS = 50

# The added documents: (page under _sources without .rst.txt, section heading). A section runs
# to the next heading of its level or above; "" is the page's introduction (up to its first
# section), None the whole page.
SELECTION = [
    ("about", None),
    ("c-api/buffer", ""),
    ("extending/index", "Recommended third party tools"),
    ("howto/cporting", None),
    ("howto/curses", "What is curses?"),
    ("howto/functional", "Introduction"),
    ("howto/functional", "Small functions and the lambda expression"),
    ("howto/pyporting", "Prevent compatibility regressions"),
    ("howto/sockets", None),
    ("howto/sorting", "Decorate-Sort-Undecorate"),
    ("installing/index", "Key terms"),
    ("library/asyncio-task", "Running in Threads"),
    ("library/cgi", ""),
    ("library/concurrent.futures", "ThreadPoolExecutor"),
    ("library/ctypes", "Loading shared libraries"),
    ("library/hashlib", "Hash algorithms"),
    ("library/idle", ""),
    ("library/idle", "Key bindings"),
    ("library/idle", "Running user code"),
    ("library/idle", "Running without a subprocess"),
    ("library/logging.handlers", "NTEventLogHandler"),
    ("library/marshal", None),
    ("library/platform", "Java Platform"),
    ("library/profile", "Introduction to the profilers"),
    ("library/statistics", ""),
    ("library/tkinter", "Architecture"),
    ("library/tkinter", "File Handlers"),
    ("library/tkinter", "Threading model"),
    ("library/tkinter.tix", None),
    ("license", "History of the software"),
    ("license", "test_epoll"),
    ("license", "XML Remote Procedure Calls"),
    ("reference/introduction", "Alternate Implementations"),
    ("tutorial/appetite", None),
    ("tutorial/classes", None),
    ("tutorial/controlflow", "Defining Functions"),
    ("tutorial/venv", "Managing Packages with pip"),
    ("using/configure", "Compiler flags"),
    ("using/mac", "Getting and Installing MacPython"),
    ("using/mac", "GUI Programming on the Mac"),
    ("using/windows", "Alternative bundles"),
    ("using/windows", "PyWin32"),
    ("using/windows", "The embeddable package"),
    ("using/windows", "The Microsoft Store package"),
    ("whatsnew/2.0", "IDLE Improvements"),
    ("whatsnew/2.0", "Module changes"),
    ("whatsnew/2.2", "New and Improved Modules"),
    ("whatsnew/2.4", "PEP 292: Simpler String Substitutions"),
    ("whatsnew/2.6", "New Documentation Format: reStructuredText Using Sphinx"),
]

_spec = importlib.util.spec_from_file_location("python_faq", os.path.join(HERE, "python-faq.py"))
python_faq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(python_faq)

ADORNMENT = re.compile(r"^([=\-~^*#+\"'`:.])\1{2,}\s*$")
# Directives whose argument and indented body are markup, not prose.
DROPPED = {
    "index", "toctree", "testsetup", "testcleanup", "highlight", "raw", "tabularcolumns",
    "module", "currentmodule", "image", "figure", "include", "literalinclude", "productionlist",
    "audit-event", "program",
}
# Directives whose argument is markup but whose body is prose or code worth keeping.
UNLABELLED = {"only", "code-block", "sourcecode", "doctest", "testcode", "testoutput", "note",
              "warning", "important", "tip", "caution", "attention", "hint", "danger", "error",
              "topic", "sidebar", "admonition", "container", "epigraph", "seealso", "rubric"}
LABELS = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}:",
    "impl-detail": "CPython implementation detail:",
    "moduleauthor": "Module author: {}",
    "sectionauthor": "Section author: {}",
}


def package_root():
    """The extracted package: the argument, else the cache of scripts/bench-search.sh (filled
    the same way, with apt-get download, when empty)."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if args:
        return args[0]
    corpora = os.environ.get("PLASMA_CORPORA_DIR") or os.path.expanduser("~/.cache/plasma/corpora")
    root = os.path.join(corpora, PACKAGE)
    if not os.path.isdir(root):
        os.makedirs(corpora, exist_ok=True)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=corpora, check=True)
        deb = sorted(f for f in os.listdir(corpora) if f.startswith(PACKAGE + "_") and f.endswith(".deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", deb, PACKAGE + ".tmp"], cwd=corpora, check=True)
        os.rename(os.path.join(corpora, PACKAGE + ".tmp"), root)
        os.remove(os.path.join(corpora, deb))
    return root


def package_version(root):
    path = os.path.join(root, "usr/share/doc", PACKAGE, "changelog.Debian.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return re.match(r"\S+ \(([^)]+)\)", f.readline()).group(1)


def headings(lines):
    """(line index of the title, level, title) of every section heading; the level is the order
    in which the page first uses the heading's adornment style, as in reStructuredText."""
    found, styles = [], []
    i = 0
    while i < len(lines) - 1:
        line, nxt = lines[i], lines[i + 1]
        over = ADORNMENT.match(line)
        if over and i + 2 < len(lines) and nxt.strip() and lines[i + 2].rstrip() == line.rstrip():
            style = (line[0], True)
            title, skip = nxt.strip(), 3
        elif (line.strip() and not line[0].isspace() and not ADORNMENT.match(line)
              and ADORNMENT.match(nxt) and len(nxt.rstrip()) >= len(line.rstrip())):
            style = (nxt[0], False)
            title, skip = line.strip(), 2
        else:
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        found.append((i, styles.index(style), title))
        i += skip
    return found


def inline(text):
    """Roles, links and literals reduced to their words, also where they span lines."""
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_{1,2}", r"\1", text)
    text = re.sub(r":[\w:.-]+:`~?!?([^`<]+?)(?:\s*<[^>]+>)?`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"\s*\[(?:#\w*|\d+)\]_", "", text)  # footnote references
    # A named reference (Pylint_) is its name.
    text = re.sub(r"(?<![\w`])([A-Za-z][\w.-]*[A-Za-z0-9])__?(?=[\s,.;:)]|$)", r"\1", text, flags=re.M)
    return text


def indent(line):
    return len(line) - len(line.lstrip())


def directives(lines):
    """Directives the FAQ's conversion does not meet: markup-only ones dropped with their body,
    version notes and author lines labelled as Sphinx renders them, field lists kept for
    authors only."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)\.\. ([\w-]+)::\s*(.*)$", line)
        field = re.match(r"^:(authors?):\s*(.*)$", line, re.I)
        footnote = re.match(r"^(\s*)\.\. \[[^\]]+\]\s+(.*)$", line)
        comment = re.match(r"^(\s*)\.\.(\s|$)", line) and not m and not line.strip().startswith(".. |")
        if footnote:  # a footnote's text, without its label
            out.append(footnote.group(1) + footnote.group(2))
        elif field:
            out.append(f"{field.group(1).capitalize()}: {field.group(2).strip()}")
        elif comment:  # a comment or a link target, with its indented continuation
            base = indent(line)
            i += 1
            while i < len(lines) and (not lines[i].strip() or indent(lines[i]) > base):
                i += 1
            continue
        elif m and m.group(2) in DROPPED:
            base = len(m.group(1))
            i += 1
            while i < len(lines) and (not lines[i].strip() or indent(lines[i]) > base):
                i += 1
            continue
        elif m and m.group(2) in UNLABELLED:
            arg = m.group(3).strip()
            if m.group(2) in ("seealso", "rubric", "topic", "admonition", "sidebar") and arg:
                out.append(m.group(1) + arg)
            else:
                out.append("")
        elif m and m.group(2) == "deprecated-removed":
            parts = m.group(3).split(None, 2)
            rest = f" {parts[2]}" if len(parts) > 2 else ""
            out.append(f"{m.group(1)}Deprecated since version {parts[0]}, will be removed in "
                       f"version {parts[1]}:{rest}")
        elif m and m.group(2) in LABELS:
            arg = re.sub(r"\s*<[^<>@\s]+@[^<>\s]+>", "", m.group(3).strip())
            label = LABELS[m.group(2)]
            if m.group(2) in ("versionadded", "versionchanged", "deprecated"):
                parts = arg.split(None, 1)
                text = label.format(parts[0] if parts else "")
                out.append(m.group(1) + text + (f" {parts[1]}" if len(parts) > 1 else ""))
            else:
                out.append(m.group(1) + label.format(arg))
        else:
            out.append(line)
        i += 1
    return out


def section(page_lines, heading):
    """The lines of the section titled `heading` without its title, or with None those of the
    whole page without the page's title; the headings within reduced to their titles."""
    found = headings(page_lines)
    start, end, own = 0, len(page_lines), found[0][0]
    if heading == "":  # the page's introduction, before its first section
        end = found[1][0] if len(found) > 1 else end
    elif heading is not None:
        matches = [k for k, (_, _, t) in enumerate(found) if inline(t) == heading or t == heading]
        if len(matches) != 1:
            raise SystemExit(f"heading {heading!r}: {len(matches)} matches")
        k = matches[0]
        start, level, _ = found[k]
        own = start
        for at, nxt_level, _ in found[k + 1:]:
            if nxt_level <= level:
                end = at
                break
    titles = {at: t for at, _, t in found}
    lines, i = [], start
    while i < end:
        line = page_lines[i]
        if i in titles:
            if i != own:
                lines += ["", titles[i], ""]
            i += 3 if ADORNMENT.match(line) else 2
            continue
        lines.append(line)
        i += 1
    return lines


def trim(text):
    if len(text) <= MAX_TEXT:
        return text
    cut = text.rfind("\n\n", 0, MAX_TEXT + 1)
    if cut < MAX_TEXT // 2:
        cut = text.rfind(" ", 0, MAX_TEXT + 1)
    return text[:cut].rstrip()


def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def document(root, page, heading):
    path = os.path.join(root, SOURCES, page + ".rst.txt")
    with open(path, encoding="utf-8") as f:
        page_lines = f.read().split("\n")
    found = headings(page_lines)
    page_title = " ".join(python_faq.plain([inline(found[0][2])]).split())
    body = inline("\n".join(section(page_lines, heading)))
    body = body.replace("\\ ", "").replace("\\,", ",")  # reStructuredText escapes
    body = body.replace("|version|", "3.11").replace("|release|", "3.11.2")
    text = python_faq.plain(directives(body.split("\n")))
    text = trim(text.strip())
    source = f"https://docs.python.org/3.11/{page}.html"
    title = page_title
    if heading:
        name = " ".join(python_faq.plain([inline(heading)]).split())
        if name != page_title:
            title = f"{page_title}: {name}"
            source += "#" + slug(name)
    return {"title": title, "source": source, "text": text}


def chunks(text, max_chars=CHUNK, overlap=OVERLAP):
    """(start, end) character spans of the research documents' chunker
    (domain/src/research/chunker.rs), ported: the relevant chunks of a hop are those holding
    its quote."""
    max_chars = max(max_chars, 1)
    overlap = min(overlap, max_chars - 1)
    n, spans, start = len(text), [], 0
    ws = str.isspace

    def paragraph(p):
        return p >= 2 and text[p - 1] == "\n" and (
            text[p - 2] == "\n" or (p >= 3 and text[p - 2] == "\r" and text[p - 3] == "\n"))

    def line(p):
        return p >= 1 and text[p - 1] == "\n"

    def sentence(p):
        return p >= 2 and ws(text[p - 1]) and text[p - 2] in ".!?\u2026"

    def word(p):
        return p >= 1 and ws(text[p - 1])

    while start < n:
        if n - start <= max_chars:
            end = n
        else:
            limit = start + max_chars
            earliest = start + overlap + max((max_chars - overlap) // 2, 1)
            end = limit
            for rule in (paragraph, line, sentence, word):
                found = next((p for p in range(limit, earliest - 1, -1) if rule(p)), None)
                if found is not None:
                    end = found
                    break
        spans.append((start, end))
        if end == n:
            break
        start = next((p for p in range(end - overlap, end)
                      if p > 0 and ws(text[p - 1]) and not ws(text[p])), end - overlap)
    return spans


def mentions(text, name):
    """`name` occurs in `text`, case-sensitively, maybe broken across lines."""
    return re.search(r"\s+".join(map(re.escape, name.split())), text) is not None


def relevant_chunks(text, quote):
    at = text.find(quote)
    return [k for k, (a, b) in enumerate(chunks(text)) if a <= at and at + len(quote) <= b]


def validate(questions, corpora):
    """Every violation of the question set's rules, as messages."""
    errors, ids = [], set()
    for corpus, docs in corpora.items():
        titles = [d["title"] for d in docs]
        for t in sorted({t for t in titles if titles.count(t) > 1}):
            if any(q_uses(q, corpus, t) for q in questions):
                errors.append(f"{corpus}: title {t!r} is not unique")
    added = [d["title"] for d in corpora["multihop"]]
    for t in sorted({t for t in added if added.count(t) > 1 or t in {d["title"] for d in corpora["faq"]}}):
        errors.append(f"multihop: title {t!r} is not unique")
    index = {(c, d["title"]): d["text"] for c, docs in corpora.items() for d in docs}
    for q in questions:
        qid = q.get("id", "?")
        where = f"{qid}:"
        if not re.fullmatch(r"mh-\d{3}", qid) or qid in ids:
            errors.append(f"{where} id must be unique, mh-NNN")
        ids.add(qid)
        for field in ("question", "bridge", "answer"):
            if not isinstance(q.get(field), str) or not q[field].strip():
                errors.append(f"{where} no {field}")
        hops = q.get("hops", [])
        if len(hops) != 2:
            errors.append(f"{where} {len(hops)} hops, not 2")
            continue
        bridge = q.get("bridge", "")
        if bridge and mentions(q.get("question", "").lower(), bridge.lower()):
            errors.append(f"{where} the question names the bridge {bridge!r}")
        if (hops[0].get("corpus"), hops[0].get("document")) == (hops[1].get("corpus"), hops[1].get("document")):
            errors.append(f"{where} both hops are in one document")
        for n, hop in enumerate(hops, 1):
            key = (hop.get("corpus"), hop.get("document"))
            if key not in index:
                errors.append(f"{where} hop {n}: no document {key[1]!r} in corpus {key[0]!r}")
                continue
            text, quote = index[key], hop.get("quote", "")
            if not 20 <= len(quote) <= 200:
                errors.append(f"{where} hop {n}: the quote has {len(quote)} characters, not 20-200")
            count = text.count(quote)
            if count != 1:
                errors.append(f"{where} hop {n}: the quote occurs {count} times in {key[1]!r}")
            elif not relevant_chunks(text, quote):
                errors.append(f"{where} hop {n}: the quote is in no single chunk of {key[1]!r}")
            if not mentions(text, bridge):
                errors.append(f"{where} hop {n}: the bridge {bridge!r} is not in {key[1]!r}")
    if len(questions) < MIN_QUESTIONS:
        errors.append(f"{len(questions)} questions, fewer than {MIN_QUESTIONS}")
    return errors


def q_uses(q, corpus, title):
    return any(h.get("corpus") == corpus and h.get("document") == title for h in q.get("hops", []))


def faq_documents():
    with open(FAQ, encoding="utf-8") as f:
        return [{"title": e["question"], "text": e["answer"]} for e in json.load(f)["entries"]]


def build():
    root = package_root()
    version = package_version(root)
    if version != VERSION:
        print(f"warning: {PACKAGE} {version}, documents.json was made from {VERSION}", file=sys.stderr)
    docs = [document(root, page, heading) for page, heading in SELECTION]
    out = {
        "provenance": (
            "Sections of the Python 3.11 documentation (https://docs.python.org/3.11/), from "
            f"the Debian package {PACKAGE} {version} ({SOURCES}/*.rst.txt), converted by "
            "scripts/multihop.py. Copyright Python Software Foundation; PSF License Version 2, "
            "see LICENSE."
        ),
        "documents": docs,
    }
    with open(os.path.join(DATA, "documents.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{PACKAGE} {version}: {len(docs)} documents, "
          f"{sum(len(d['text']) for d in docs)} characters", file=sys.stderr)
    return docs


def main():
    if "--check" in sys.argv[1:]:
        with open(os.path.join(DATA, "documents.json"), encoding="utf-8") as f:
            docs = json.load(f)["documents"]
    else:
        docs = build()
    corpora = {"faq": faq_documents(), "multihop": docs}
    with open(os.path.join(DATA, "questions.json"), encoding="utf-8") as f:
        questions = json.load(f)["questions"]
    errors = validate(questions, corpora)
    bridges = {}
    for q in questions:
        bridges[q.get("bridge")] = bridges.get(q.get("bridge"), 0) + 1
    pairs = {}
    for q in questions:
        pair = "→".join(h.get("corpus", "?") for h in q.get("hops", []))
        pairs[pair] = pairs.get(pair, 0) + 1
    used = {(h["corpus"], h["document"]) for q in questions for h in q.get("hops", []) if "document" in h}
    print(f"{len(questions)} questions; hops {', '.join(f'{k} {v}' for k, v in sorted(pairs.items()))}; "
          f"{len(used)} documents used ({sum(1 for c, _ in used if c == 'multihop')} of "
          f"{len(docs)} added)", file=sys.stderr)
    print("bridges: " + ", ".join(f"{b} {n}" for b, n in sorted(bridges.items(), key=lambda x: (-x[1], x[0]))),
          file=sys.stderr)
    for e in errors:
        print("error: " + e, file=sys.stderr)
    if errors:
        sys.exit(f"{len(errors)} violations")
    print("questions.json: valid", file=sys.stderr)


if __name__ == "__main__":
    main()
