#!/usr/bin/env python3
"""Builds data/python-faq/faq.json, the research demo's documents and the search benchmark's
labelled set, from the Python FAQ as Debian ships it (package python3.11-doc, the reStructuredText
sources of docs.python.org under _sources/faq/).

Each FAQ entry becomes one document: its title is the question, its text the answer with the
reStructuredText markup reduced to plain text. The questions are the labelled queries: the
relevant chunks of a question are the chunks of its own answer, which never contains the
question itself (the title is not indexed for search).

    scripts/python-faq.py [DIR]   # DIR: an extracted python3.11-doc; downloaded if absent
"""
import json, os, re, subprocess, sys, tempfile

PACKAGE = "python3.11-doc"
PAGES = ["general", "programming", "design", "library", "extending", "windows", "gui", "installed"]
HEADING = re.compile(r"^([=\-~^*#+])\1{3,}\s*$")


def source_dir(root):
    return os.path.join(root, "usr/share/doc/python3.11/html/_sources/faq")


def extracted():
    if len(sys.argv) > 1:
        return sys.argv[1]
    work = tempfile.mkdtemp()
    subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True)
    deb = next(f for f in os.listdir(work) if f.endswith(".deb"))
    version = deb.split("_")[1]
    subprocess.run(["dpkg-deb", "-x", deb, "x"], cwd=work, check=True)
    print(f"{PACKAGE} {version}", file=sys.stderr)
    return os.path.join(work, "x")


def plain(lines):
    """reStructuredText to plain text: roles, links and directives reduced to their words."""
    out = []
    for line in lines:
        if re.match(r"^\s*\.\. ", line):
            # A directive or a target: keep a directive's argument text (e.g. a note's words).
            rest = re.sub(r"^\s*\.\. [\w-]+::\s*", "", line)
            if rest == line.strip() or rest.startswith(".. "):
                continue
            line = rest
        if re.match(r"^\s*:[\w-]+:", line):  # field lists such as :tocdepth:
            continue
        line = re.sub(r"`([^`<]+?)\s*<[^>]+>`_{1,2}", r"\1", line)  # `text <url>`_
        line = re.sub(r":[\w:.-]+:`~?!?([^`<]+?)(?:\s*<[^>]+>)?`", r"\1", line)  # :role:`x <y>`
        line = re.sub(r"``([^`]+)``", r"\1", line)
        line = re.sub(r"`([^`]+)`_{0,2}", r"\1", line)
        line = line.replace("::", ":") if line.rstrip().endswith("::") else line
        out.append(line.rstrip())
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text


def entries(path, page):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, question, body = [], None, []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        m = HEADING.match(nxt)
        if line.strip() and not HEADING.match(line) and m and len(nxt.strip()) >= len(line.strip()):
            if question is not None:
                found.append((question, body))
            # Questions are the '-' headings; other levels are page titles and sections.
            question = line.strip() if m.group(1) == "-" else None
            body = []
            i += 2
            continue
        if question is not None:
            body.append(line)
        i += 1
    if question is not None:
        found.append((question, body))
    docs = []
    for q, body in found:
        text = plain(body)
        if len(text) >= 40:
            docs.append({"page": page, "question": q, "answer": text})
    return docs


def main():
    root = extracted()
    docs = []
    for page in PAGES:
        docs += entries(os.path.join(source_dir(root), f"{page}.rst.txt"), page)
    out = {
        "provenance": (
            "The Python FAQ (https://docs.python.org/3.11/faq/), from the Debian package "
            f"{PACKAGE} (_sources/faq/*.rst.txt), converted by scripts/python-faq.py. "
            "Copyright Python Software Foundation; PSF License Version 2, see LICENSE."
        ),
        "entries": docs,
    }
    target = os.path.join(os.path.dirname(__file__), "..", "data", "python-faq", "faq.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(docs)} entries, {sum(len(d['answer']) for d in docs)} characters", file=sys.stderr)


if __name__ == "__main__":
    main()
