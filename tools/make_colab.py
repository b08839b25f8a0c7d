"""Make the notebooks Colab opens: ``chapters/NN_name.ipynb`` -> ``colab/NN_name.ipynb``.

Colab (and plain Jupyter) do not render MyST. In a chapter's Markdown a Colab reader would see
"FCN-8s reaches {glue:text}`fcn8s_miou`" instead of a number, and citations and
cross-references as code. The converted notebook has, instead:

* **glued values** (``{glue:text}`name```, ``{glue}`name```, ``{glue:text}`name:.2f```) as the
  text the book shows, in bold as in the book, read from the chapter's own stored outputs
  (``application/papermill.record/text/plain`` with ``metadata.scrapbook.name``); one line at the
  top says they come from the book's reference run and that a reader's run will differ slightly;
* **citations** (``{cite}``, ``{cite:p}``, ``{cite:t}`` ...) as "(He et al., 2016)" or
  "He et al. (2016)", each linked to its entry on the HTML bibliography page; the labels are the
  book's (``_ext/segbook_bib.py`` over ``references.bib``, so "2018a"/"2018b" agree);
* **cross-references** (``{doc}``, ``{ref}``, ``{numref}``, ``{eq}``) as links into the HTML book,
  with the text the book shows ("Fully convolutional networks", "Fig. 3.4");
* **MyST directives** (admonitions, ``{figure}``, ``{image}``, ``{math}``, ``{code-block}``,
  ``{margin}``, ``{dropdown}``, ...) as plain Markdown that Colab renders; ``(label)=`` targets,
  ``%`` comments and ``+++`` breaks removed; any other role as its plain text;
* **figure captions** (kept by myst-nb in the cell metadata, which Colab never shows) as a
  Markdown cell under the figure's code cell, numbered as in the book and linked to it.

**Outputs are stripped**: a Colab reader runs the chapter (another seed count, another machine's
arithmetic or a GPU give other numbers and figures than the committed CPU run, so stored outputs
would disagree with what the reader's own run prints), the book shows the reference outputs (each caption links
to its figure there), and the converted notebooks stay small (about 10 % of the chapter), so a
re-executed chapter does not add its images to the repository twice. Code cells are copied
verbatim, in order, so the notebook runs exactly as the chapter; the first (install) cell is
untouched. Cells the book hides (``remove-cell``, ``remove-input``, ``hide-input``) get a
``# @title`` line and Colab's collapsed form view.

Usage (from the repository root, in the environment with the ``book`` extra)::

    python tools/make_colab.py             # write colab/ for every chapter
    python tools/make_colab.py --check     # exit 1, naming the stale ones, if colab/ is out of date

Run it after re-executing or editing a chapter, and commit ``colab/`` with the chapter;
``tests/test_make_colab.py`` fails while they disagree. The book's own URL is ``html.baseurl``
in ``_config.yml``; the repository (for images) is ``repository.url`` and ``.branch``.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLAB_DIR = "colab"
COMMAND = "python tools/make_colab.py"
GLUE_MIME = "application/papermill.record/text/plain"
HIDDEN_TAGS = {"remove-cell": "hidden in the book: checks the claims above",
               "remove-input": "hidden in the book: records numbers for the text",
               "hide-input": "folded in the book"}
ADMONITIONS = {"note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
               "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
               "seealso": "See also", "todo": "To do"}
QUOTE_DIRECTIVES = {"margin", "sidebar", "epigraph", "pull-quote", "highlights", "topic", "rubric", "aside"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "code-cell", "literalinclude"}
DROP_DIRECTIVES = {"bibliography", "tableofcontents", "toctree", "contents", "glossary", "index", "only"}
ROLE_RE = re.compile(r"\{(?P<role>[A-Za-z][\w:+.-]*)\}(?P<tick>`+)(?P<content>.+?)(?P=tick)"
                     r"|(?P<code>(?P<ctick>`+).+?(?P=ctick))", re.S)
FENCE_RE = re.compile(r"^(?P<indent>\s{0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*)$")
DIRECTIVE_RE = re.compile(r"^\{(?P<name>[\w:+.-]+)\}\s*(?P<arg>.*)$")
TARGET_RE = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
HEADING_RE = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
TITLED_RE = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


class ConversionError(ValueError):
    """A role or directive the converter cannot resolve (an unknown glue name, cite key, label)."""


# ----------------------------------------------------------------------------------------------
# What the book knows: chapter numbers, titles, labels, figure numbers, bibliography labels
# ----------------------------------------------------------------------------------------------
@dataclass
class Target:
    doc: str          # "chapters/02_fcn"
    anchor: str       # HTML id ("fig-fcn-masks", "real-data")
    title: str        # what {ref} shows (a heading's text, a figure's caption)
    number: str = ""  # what {numref} shows after "Fig. " ("3.4"); "" for sections


@dataclass
class Book:
    root: Path
    base_url: str                     # "https://segbook.github.io/segbook/"
    repo_raw: str                     # raw files of the repository at its branch, for images
    titles: dict[str, str] = field(default_factory=dict)    # doc -> title
    numbers: dict[str, int] = field(default_factory=dict)   # doc -> chapter number
    targets: dict[str, Target] = field(default_factory=dict)
    citations: dict[str, str] = field(default_factory=dict)  # bib key -> "He et al., 2016"
    bibliography_doc: str = "chapters/references"

    def url(self, doc: str, anchor: str = "") -> str:
        return f"{self.base_url}{doc}.html" + (f"#{anchor}" if anchor else "")

    def cite_url(self, key: str) -> str:
        from docutils.nodes import make_id  # the id sphinxcontrib-bibtex gives "cite-{key}"

        return self.url(self.bibliography_doc, make_id(f"cite-{key}"))


def _toc_docs(toc: dict) -> list[tuple[str, bool]]:
    """``[(doc, numbered), ...]`` in reading order from ``_toc.yml`` (jb-book format)."""
    docs = [(toc["root"], False)]

    def walk(entries, numbered):
        for entry in entries or []:
            if "file" in entry:
                docs.append((entry["file"], numbered))
            walk(entry.get("sections"), numbered)

    for part in toc.get("parts", []):
        walk(part.get("chapters"), bool(part.get("numbered")))
    walk(toc.get("chapters"), False)
    return docs


def _source(root: Path, doc: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        if (root / f"{doc}{suffix}").exists():
            return root / f"{doc}{suffix}"
    return None


def _markdown_blocks(path: Path) -> list[tuple[str, dict | None]]:
    """A source's Markdown, in order, as ``(text, None)``, and its figure cells as ``("", cell)``."""
    if path.suffix == ".md":
        return [(path.read_text(encoding="utf-8"), None)]
    blocks = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            blocks.append(("".join(cell["source"]), None))
        elif cell["cell_type"] == "code":
            blocks.append(("", cell))
    return blocks


def _figure_meta(cell: dict) -> dict:
    return ((cell.get("metadata") or {}).get("mystnb") or {}).get("figure") or {}


def _plain_heading(title: str) -> str:
    """A heading's text as the book shows it in a {ref} link (roles and emphasis left as text)."""
    title = ROLE_RE.sub(lambda m: m.group("content") if m.group("role") else m.group("code").strip("`"), title)
    return re.sub(r"[*_]{1,2}(\S.*?\S|\S)[*_]{1,2}", r"\1", title).strip()


def load_book(root: Path = ROOT) -> Book:
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    base_url = (config.get("html") or {}).get("baseurl", "").strip()
    if not base_url:
        raise ConversionError("_config.yml needs html.baseurl (where the HTML book is published): the Colab "
                              "notebooks link citations and cross-references there")
    repo = config.get("repository") or {}
    repo_url = repo.get("url", "").rstrip("/")
    owner_repo = repo_url.split("github.com/", 1)[-1]
    book = Book(root=root, base_url=base_url.rstrip("/") + "/",
                repo_raw=f"https://raw.githubusercontent.com/{owner_repo}/{repo.get('branch', 'main')}/")
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    chapter = 0
    for doc, numbered in _toc_docs(toc):
        path = _source(root, doc)
        if path is None:
            continue
        if numbered:
            chapter += 1
            book.numbers[doc] = chapter
        figures = 0
        pending: list[str] = []
        for text, cell in _markdown_blocks(path):
            if cell is not None:
                meta = _figure_meta(cell)
                if meta.get("name"):
                    figures += 1
                    number = f"{chapter}.{figures}" if numbered else str(figures)
                    book.targets[meta["name"]] = Target(doc, meta["name"], meta.get("caption", ""), number)
                continue
            in_fence, in_fence_is_figure = None, False
            for line in text.splitlines():
                fence = FENCE_RE.match(line)
                if in_fence:
                    if fence and fence.group("fence")[0] == in_fence[0] and len(fence.group("fence")) >= len(in_fence) \
                            and not fence.group("info").strip():
                        in_fence = None
                    elif (name := re.match(r"^:name:\s*(\S+)", line.strip())) and in_fence_is_figure:
                        figures += 1
                        number = f"{chapter}.{figures}" if numbered else str(figures)
                        book.targets[name.group(1)] = Target(doc, name.group(1), "", number)
                    continue
                if fence:
                    in_fence = fence.group("fence")
                    in_fence_is_figure = fence.group("info").strip().startswith("{figure}")
                    continue
                if target := TARGET_RE.match(line):
                    pending.append(target.group("label"))
                    continue
                if heading := HEADING_RE.match(line):
                    title = _plain_heading(heading.group("title"))
                    if doc not in book.titles:
                        book.titles[doc] = title
                    for label in pending:
                        book.targets[label] = Target(doc, label, title)
                    pending = []
                elif line.strip():
                    pending = []
    book.citations = bibliography_labels(root / "references.bib", root / "_ext")
    return book


def bibliography_labels(bibfile: Path, ext_dir: Path) -> dict[str, str]:
    """``{key: label}`` exactly as the book's bibliography labels every entry (``:all:``)."""
    import pybtex.database

    sys.path.insert(0, str(ext_dir))
    try:
        import segbook_bib
    finally:
        sys.path.remove(str(ext_dir))
    data = pybtex.database.parse_file(str(bibfile), bib_format="bibtex")
    style = segbook_bib.SegbookStyle()
    entries = list(style.sort(data.entries.values()))
    return dict(zip((e.key for e in entries), style.format_labels(entries)))


# ----------------------------------------------------------------------------------------------
# One chapter: glued values, then Markdown conversion
# ----------------------------------------------------------------------------------------------
def glued_values(nb: dict) -> dict[str, str]:
    """``{name: text/plain}`` of every value the notebook glued (the last one wins, as in myst-nb)."""
    out = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            name = ((output.get("metadata") or {}).get("scrapbook") or {}).get("name")
            data = output.get("data") or {}
            if name and GLUE_MIME in data:
                text = data[GLUE_MIME]
                out[name] = "".join(text) if isinstance(text, list) else str(text)
    return out


def format_glue(text_plain: str, fmt_spec: str = "") -> str:
    """What ``{glue:text}`` shows: myst-nb's ``format_plain_text`` (the repr's quotes removed)."""
    try:
        value = ast.literal_eval(text_plain)
    except (SyntaxError, ValueError):
        value = text_plain
    if not fmt_spec:
        return str(value)
    kind = fmt_spec[-1]
    if kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    else:
        value = str(value)
    return format(value, fmt_spec)


@dataclass
class Chapter:
    book: Book
    doc: str
    glue: dict[str, str]

    # -- roles -------------------------------------------------------------------------------
    def role(self, name: str, content: str) -> str:
        name = name.lower()
        if name in ("glue", "glue:", "glue:any", "glue:text", "glue:md"):
            return self._glue(content, text=name != "glue:md")
        if name.startswith("cite"):
            return self._cite(name, content)
        if name == "doc":
            return self._doc(content)
        if name in ("ref", "numref", "eq", "any", "std:ref"):
            return self._ref(name, content)
        if name == "math":
            return f"${content}$"
        if name in ("sub", "subscript"):
            return f"<sub>{content}</sub>"
        if name in ("sup", "superscript"):
            return f"<sup>{content}</sup>"
        if name in ("code", "literal", "file", "samp", "kbd", "command", "envvar", "py:func", "py:class",
                    "py:mod", "py:meth", "func", "class", "mod", "meth"):
            return f"`{content}`"
        # {abbr}, {term}, {download}, {guilabel}, ...: the text the reader sees, without markup
        if name == "abbr":
            return re.sub(r"\s*\(.*\)$", "", content)
        titled = TITLED_RE.match(content)
        return titled.group("title") if titled else content

    def _glue(self, content: str, text: bool) -> str:
        key, _, fmt_spec = content.partition(":") if text else (content, "", "")
        key = key.split("::")[-1].strip()
        if key not in self.glue:
            raise ConversionError(f"{self.doc}: no glued value named {key!r} in the notebook's outputs "
                                  "(re-execute the chapter: python tools/execute_chapters.py)")
        return f"**{format_glue(self.glue[key], fmt_spec)}**"

    def _cite(self, name: str, content: str) -> str:
        keys = [k.strip() for k in content.split(",") if k.strip()]
        links = []
        for key in keys:
            if key not in self.book.citations:
                raise ConversionError(f"{self.doc}: {{cite}} key {key!r} is not in references.bib")
            label = self.book.citations[key]
            who, _, year = label.rpartition(", ")
            text = f"{who} ({year})" if name.split(":")[-1] in ("t", "ts", "alt", "alts", "ct") else label
            links.append(f"[{text}]({self.book.cite_url(key)})")
        if name.split(":")[-1] in ("t", "ts", "ct", "cts"):
            return "; ".join(links)
        return "(" + "; ".join(links) + ")"

    def _resolve_doc(self, target: str) -> str:
        target = target.strip().removesuffix(".md").removesuffix(".ipynb")
        if target.startswith("/"):
            return target.lstrip("/")
        base = Path(self.doc).parent
        return (base / target).as_posix() if str(base) != "." else target

    def _doc(self, content: str) -> str:
        m = TITLED_RE.match(content)
        title, target = (m.group("title"), m.group("target")) if m else (None, content)
        doc = self._resolve_doc(target)
        if doc not in self.book.titles:
            raise ConversionError(f"{self.doc}: {{doc}} target {target!r} is not a page of the book")
        return f"[{title or self.book.titles[doc]}]({self.book.url(doc)})"

    def _ref(self, name: str, content: str) -> str:
        m = TITLED_RE.match(content)
        title, label = (m.group("title"), m.group("target")) if m else (None, content.strip())
        target = self.book.targets.get(label)
        if target is None:
            raise ConversionError(f"{self.doc}: {{{name}}} label {label!r} is defined nowhere in the book")
        if name == "numref":
            number = target.number or "?"
            if title:
                text = title.replace("%s", number).replace("{number}", number).replace("{name}", target.title)
            else:
                text = f"Fig. {number}"
        elif name == "eq":
            text = title or f"({target.number})"
        else:
            text = title or target.title or label
        return f"[{text}]({self.book.url(target.doc, target.anchor)})"

    # -- inline and block Markdown ----------------------------------------------------------
    def inline(self, text: str) -> str:
        def repl(m: re.Match) -> str:
            if m.group("code"):
                return m.group("code")  # inline code is shown as written, roles inside it included
            return self.role(m.group("role"), m.group("content"))

        return ROLE_RE.sub(repl, text)

    def markdown(self, text: str) -> str:
        """MyST Markdown -> Markdown that Colab renders."""
        lines = text.split("\n")
        out: list[str] = []
        prose: list[str] = []

        def flush():
            if prose:
                out.extend(self.inline("\n".join(prose)).split("\n"))
                prose.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            fence = FENCE_RE.match(line)
            if fence:
                marker, info = fence.group("fence"), fence.group("info").strip()
                j = i + 1
                while j < len(lines):
                    close = FENCE_RE.match(lines[j])
                    if close and close.group("fence")[0] == marker[0] and len(close.group("fence")) >= len(marker) \
                            and not close.group("info").strip():
                        break
                    j += 1
                body = lines[i + 1:j]
                directive = DIRECTIVE_RE.match(info)
                flush()
                if directive:
                    out.extend(self.directive(directive.group("name"), directive.group("arg").strip(), body,
                                              fence.group("indent")))
                elif marker[0] == ":":
                    out.extend(self.markdown("\n".join(body)).split("\n"))  # a plain colon fence: its content
                else:
                    out.extend(lines[i:j + 1])  # a code block, verbatim
                i = j + 1
                continue
            stripped = line.strip()
            if TARGET_RE.match(line) or stripped == "+++" or (stripped.startswith("%") and not stripped.startswith("%%")):
                i += 1
                continue
            prose.append(line)
            i += 1
        flush()
        result = "\n".join(out)
        result = re.sub(r"(\$\$)\s*\((?P<label>[\w-]+)\)\s*$", r"\1", result, flags=re.M)  # $$ ... $$ (label)
        return re.sub(r"\n{3,}", "\n\n", result).strip("\n")

    def directive(self, name: str, arg: str, body: list[str], indent: str = "") -> list[str]:
        options, content = _split_options(body)
        name = name.lower()
        inner = self.markdown("\n".join(content)) if content else ""
        if name in ADMONITIONS or name == "admonition":
            title = self.inline(arg) if (name == "admonition" and arg) else ADMONITIONS.get(name, "Note")
            if name != "admonition" and arg:
                inner = self.inline(arg) + ("\n\n" + inner if inner else "")
            return _quote(f"**{title}**" + ("\n\n" + inner if inner else ""))
        if name in QUOTE_DIRECTIVES:
            head = f"**{self.inline(arg)}**\n\n" if arg else ""
            return _quote(head + inner)
        if name in ("dropdown", "toggle", "details"):
            summary = self.inline(arg) or "Details"
            return [f"<details><summary>{summary}</summary>", "", *inner.split("\n"), "", "</details>"]
        if name in ("figure", "image"):
            src = arg if re.match(r"^[a-z]+://", arg) else self.book.repo_raw + (Path(self.doc).parent / arg).as_posix()
            alt = options.get("alt", "")
            width = options.get("width", "")
            img = f'<img src="{src}" alt="{alt}"' + (f' width="{width}"' if width else "") + ">" if width \
                else f"![{alt}]({src})"
            lines = [img]
            if name == "figure":
                label = options.get("name")
                number = self.book.targets[label].number if label in self.book.targets else ""
                caption = (f"Fig. {number}: " if number else "") + inner.replace("\n", " ")
                lines += ["", f"*{caption.strip()}*"]
            return lines
        if name == "math":
            return ["$$", *content, "$$"]
        if name in CODE_DIRECTIVES:
            lang = arg.split()[0] if arg else ("python" if name == "code-cell" else "")
            return [f"```{lang}", *content, "```"]
        if name in ("table", "list-table", "csv-table"):
            head = [f"**{self.inline(arg)}**", ""] if arg else []
            return head + inner.split("\n")
        if name.startswith("glue"):
            key = arg.split("::")[-1].strip()
            if key in self.glue and name in ("glue", "glue:", "glue:any", "glue:math", "glue:md"):
                value = format_glue(self.glue[key])
                return ["$$", value, "$$"] if name == "glue:math" else [value]
            return [f"*(A figure in [the book's chapter]({self.book.url(self.doc)}).)*"]
        if name in DROP_DIRECTIVES:
            return []
        if name == "raw":
            return content if arg.strip().lower() == "html" else []
        return inner.split("\n") if inner else []  # anything else: its content, without the fence


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` lines (or ``---`` YAML block) and the rest of its body."""
    options: dict[str, str] = {}
    i = 0
    if body and body[0].strip() == "---":
        end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
        if end is not None:
            options = {str(k): str(v) for k, v in (yaml.safe_load("\n".join(body[1:end])) or {}).items()}
            i = end + 1
    while i < len(body) and (m := re.match(r"^\s*:([\w-]+):\s*(.*)$", body[i])):
        options[m.group(1)] = m.group(2).strip()
        i += 1
    return options, body[i:]


def _quote(text: str) -> list[str]:
    return [f"> {line}".rstrip() for line in text.split("\n")]


# ----------------------------------------------------------------------------------------------
# The notebook
# ----------------------------------------------------------------------------------------------
def _source_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _notice(book: Book, doc: str) -> str:
    number = book.numbers.get(doc)
    which = f"chapter {number}" if number else "a page"
    return (f"> *The Colab edition of {which} of [the segbook book]({book.url(doc)}). The numbers in the text "
            "are those of the book's reference run (quick profile, CPU, seeds 0-2): your run will differ slightly "
            "(a CPU runtime trains one seed, a GPU three). Outputs are not stored here: run the cells "
            "(Runtime, Run all) or see them in the book.*")


def convert(path: Path, book: Book | None = None) -> dict:
    """The Colab notebook for the chapter at ``path`` (a dict in nbformat 4)."""
    book = book or load_book()
    nb = json.loads(path.read_text(encoding="utf-8"))
    doc = path.relative_to(book.root).with_suffix("").as_posix()
    chapter = Chapter(book, doc, glued_values(nb))
    cells = []
    noticed = False
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        meta = cell.get("metadata") or {}
        tags = list(meta.get("tags") or [])
        new_meta = {"tags": tags} if tags else {}
        if cell["cell_type"] == "markdown":
            text = chapter.markdown(source)
            if not noticed:
                head, sep, rest = text.partition("\n")
                text = (f"{head}\n\n{_notice(book, doc)}\n\n{rest.lstrip()}" if HEADING_RE.match(head)
                        else f"{_notice(book, doc)}\n\n{text}").rstrip()
                noticed = True
            cells.append({"cell_type": "markdown", "id": cell.get("id"), "metadata": new_meta,
                          "source": _source_lines(text)})
            continue
        if cell["cell_type"] != "code":
            continue
        hidden = next((HIDDEN_TAGS[t] for t in tags if t in HIDDEN_TAGS), None)
        if hidden and not source.lstrip().startswith(("%%", "# @title", "#@title")):
            source = f"# @title ({hidden})\n{source}"
            new_meta["cellView"] = "form"
        cells.append({"cell_type": "code", "execution_count": None, "id": cell.get("id"), "metadata": new_meta,
                      "outputs": [], "source": _source_lines(source)})
        figure = _figure_meta(cell)
        if figure.get("caption"):
            label = figure.get("name")
            target = book.targets.get(label)
            caption = chapter.markdown(figure["caption"]).replace("\n", " ")
            number = f"Fig. {target.number}" if target else "Figure"
            link = f" ([in the book]({book.url(doc, label)}))" if label else ""
            cells.append({"cell_type": "markdown", "id": f"{cell.get('id') or len(cells)}-caption"[:64],
                          "metadata": {}, "source": _source_lines(f"*{number}: {caption}*{link}")})
    if not noticed:
        cells.insert(0, {"cell_type": "markdown", "id": "colab-notice", "metadata": {},
                         "source": _source_lines(_notice(book, doc))})
    for cell in cells:
        if cell["id"] is None:
            del cell["id"]
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    metadata["colab"] = {"provenance": [], "toc_visible": True}
    metadata["segbook"] = {"generated_from": path.relative_to(book.root).as_posix(),
                           "generated_by": f"{COMMAND} (do not edit: edit the chapter and run it again)"}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": nb.get("nbformat_minor", 5)}


def dumps(nb: dict) -> str:
    """nbformat's own layout (indent 1, sorted keys, UTF-8), so the files diff cleanly."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


def target_of(chapter: Path, root: Path = ROOT) -> Path:
    return root / COLAB_DIR / chapter.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="chapter notebooks (default: chapters/NN_*.ipynb)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if colab/ is out of date")
    args = parser.parse_args(argv)
    book = load_book(ROOT)
    paths = [p.resolve() for p in args.paths] or chapters(ROOT)
    stale = []
    for path in paths:
        text = dumps(convert(path, book))
        target = target_of(path, ROOT)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(target.relative_to(ROOT).as_posix())
            continue
        target.parent.mkdir(exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)} ({len(text) / 1024:.0f} KiB)")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `{COMMAND}` and commit colab/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
