"""The book as a reader sees it: checks on the built HTML in ``_build/html``.

This file builds nothing. Run it after ``jupyter-book build . -W -n --keep-going``::

    python -m pytest tests/test_book.py -q

It skips (saying why) when ``_build/html`` is absent or older than the chapters. Each page is
parsed and must have:

* no raw ``{glue`` in the text (a role that did not render);
* no ``nan`` in a table (a missing value shows as an em dash);
* no image without alt text, or whose alt text is a file path (myst-nb's default);
* no broken internal link, anchor, image or asset (CSS, JS);
* no visible source of a cell that belongs hidden (``claim(``), and no visible cell cluttered with
  ``glue(`` calls (``segbook.notebook.glue_all`` or a hidden cell instead);
* no "not written yet" stub for a chapter whose notebook exists;
* citations whose text is the bibliography entry's label, numbered chapters, the book's stylesheet.

No page may load a script or stylesheet from the network (MathJax 3 is vendored in
``_static/mathjax``), and the Colab button must open ``colab/NAME.ipynb``, whose links into the
book must land on built pages and anchors with the numbers and labels the book shows.

In a real browser (Debian's ``chromium`` and ``chromium-driver``, driven through ChromeDriver by
``tests/browser.py``, with every host name but 127.0.0.1 unresolvable: the network is off), every
page is opened at 1280 and 390 px: nothing may be wider than the window outside a code, table,
maths or output scroller (the failure names the page, the section and the element), the maths must
be typeset by the book's own MathJax 3 (no raw TeX delimiters left), the screenshot (kept in
``_build/screenshots/``) must not be blank, and at 390 px the menu and contents buttons must open
their drawers. Without Chromium these tests skip, unless ``SEGBOOK_REQUIRE_BROWSER=1`` (set by
``.ci/run``), which makes them fail instead.

The checking functions at the top are tested on small HTML snippets below, so each check is
known to fail on the fault it looks for.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTERS = ROOT / "chapters"
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
MAX_VISIBLE_GLUE = 3  # glue(...) calls one visible cell may show; more belong in glue_all or a hidden cell
MIN_INK = 0.003  # a screenshot with fewer drawn pixels than this is blank (the empty genindex at 390 px: 0.8%)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf")

bs4 = pytest.importorskip("bs4", reason="beautifulsoup4 (installed with jupyter-book) parses the HTML")


# ----------------------------------------------------------------------------------------------
# Checks: each takes a parsed page and returns a list of problems (strings)
# ----------------------------------------------------------------------------------------------
def parse(html: str):
    return bs4.BeautifulSoup(html, "html.parser")


def _article(soup):
    """The page's main content (the theme's article), or the whole body."""
    return soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup


def _visible_prose(soup) -> str:
    """Article text outside code: no code cells' sources, literals, scripts or styles."""
    article = _article(soup).__copy__()
    for tag in article.find_all(["script", "style", "pre", "code"]):
        tag.decompose()
    for tag in article.find_all(class_="cell_input"):
        tag.decompose()
    return article.get_text(" ")


def raw_glue(soup) -> list[str]:
    text = _visible_prose(soup)
    return [f"raw glue role in the text: ...{text[max(0, m.start() - 40): m.end() + 40]!r}..."
            for m in re.finditer(r"\{glue", text)]


def nan_in_tables(soup) -> list[str]:
    problems = []
    for table in _article(soup).find_all("table"):
        for cell in table.find_all(["td", "th"]):
            if re.search(r"(?<![\w.])nan(?![\w])", cell.get_text(" "), flags=re.IGNORECASE):
                row = cell.find_parent("tr")
                problems.append(f"'nan' in a table cell (row: {row.get_text(' | ', strip=True)[:120]!r})")
    return problems


def _looks_like_path(alt: str, src: str) -> bool:
    a = alt.strip().lower()
    return a == src.strip().lower() or "_images/" in a or a.endswith(IMAGE_SUFFIXES) or bool(re.fullmatch(r"[./\w-]+/[\w./-]+", a))


def bad_alt_text(soup) -> list[str]:
    problems = []
    for img in soup.find_all("img"):
        if img.get("role") == "presentation" or img.get("aria-hidden") == "true":
            continue
        alt, src = img.get("alt"), img.get("src", "")
        if alt is None or not alt.strip():
            problems.append(f"image without alt text: {src}")
        elif _looks_like_path(alt, src):
            problems.append(f"image whose alt text is a file path: alt={alt!r}")
    return problems


def _ids(soup) -> set[str]:
    return {t["id"] for t in soup.find_all(attrs={"id": True})} | {t["name"] for t in soup.find_all("a", attrs={"name": True})}


def broken_links(soup, page: Path, root: Path, ids_of) -> list[str]:
    """Internal ``href``/``src`` that point at no file, or at an anchor the target lacks.

    ``ids_of(path)`` returns the element ids of another built page (cached by the caller).
    """
    problems = []
    refs = [(t.name, "href", t.get("href")) for t in soup.find_all(["a", "link"]) if t.get("href")]
    refs += [(t.name, "src", t.get("src")) for t in soup.find_all(["img", "script", "source"]) if t.get("src")]
    for tag, attr, url in refs:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
            continue
        target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if parts.path and target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"<{tag} {attr}={url!r}>: {target.relative_to(root) if target.is_relative_to(root) else target} does not exist")
            continue
        if parts.fragment and tag == "a" and target.suffix == ".html":
            fragment = unquote(parts.fragment)
            if fragment not in ids_of(target):
                problems.append(f"<a href={url!r}>: no element with id {fragment!r} in {target.name}")
    return problems


def visible_hidden_sources(soup) -> list[str]:
    problems = []
    for cell in _article(soup).find_all(class_="cell_input"):
        source = cell.get_text()
        if "claim(" in source:
            first = next(line for line in source.splitlines() if "claim(" in line)
            problems.append(f"a visible cell shows a claim check (tag it remove-cell): {first.strip()[:100]!r}")
        n_glue = len(re.findall(r"(?<![\w.])glue\(", source))
        if n_glue > MAX_VISIBLE_GLUE:
            problems.append(f"a visible cell shows {n_glue} glue(...) calls (use glue_all or a hidden cell): "
                            f"{source.strip().splitlines()[0][:80]!r}")
    return problems


def stub_text(soup) -> list[str]:
    text = _article(soup).get_text(" ")
    return ["page says 'not written yet'"] if re.search(r"not\s+written\s+yet", text, re.IGNORECASE) else []


def citation_labels(soup, ids_and_labels) -> list[str]:
    """Each in-text citation ``[X]`` must read like the label ``[X]`` of the entry it links to.

    ``ids_and_labels(path)`` maps the bibliography page's entry ids to their labels.
    """
    problems = []
    for span in soup.find_all("span", class_="bibtex-citation"):
        for a in span.find_all("a", href=True):
            parts = urlsplit(a["href"])
            labels = ids_and_labels(parts.path)
            label = labels.get(unquote(parts.fragment))
            text = a.get_text(" ", strip=True)
            if label is None:
                problems.append(f"citation {text!r} links to {a['href']!r}, which is no bibliography entry")
            elif text not in (label, label.rsplit(", ", 1)[-1]):  # {cite:p} shows the label, {cite:t} its year
                problems.append(f"citation reads {text!r} but the bibliography labels it [{label}]")
    return problems


def bibliography_labels(soup) -> dict[str, str]:
    """``{entry id: label}`` of a page's bibliography (``<div class="citation" id=...>``)."""
    out = {}
    for entry in soup.find_all(class_="citation"):
        label = entry.find(class_="label")
        if entry.get("id") and label is not None:
            out[entry["id"]] = label.get_text("", strip=True).strip("[]")
    return out


# ----------------------------------------------------------------------------------------------
# The checks fail on what they look for (always run, no build needed)
# ----------------------------------------------------------------------------------------------
def test_checks_find_raw_glue_but_not_documented_glue():
    assert raw_glue(parse("<article><p>mIoU {glue:text}`miou` here</p></article>"))
    assert not raw_glue(parse("<article><p>write <code>{glue:text}`x`</code></p></article>"))
    assert not raw_glue(parse("<article><p>mIoU 0.512 here</p></article>"))


def test_checks_find_nan_in_tables():
    assert nan_in_tables(parse("<article><table><tr><td>phi=0</td><td>nan</td></tr></table></article>"))
    assert nan_in_tables(parse("<article><table><tr><td>NaN</td></tr></table></article>"))
    assert not nan_in_tables(parse("<article><table><tr><td>\u2014</td><td>financial</td></tr></table></article>"))


def test_checks_find_missing_and_path_alt_text():
    assert bad_alt_text(parse('<img src="a.png">'))
    assert bad_alt_text(parse('<img src="a.png" alt="  ">'))
    assert bad_alt_text(parse('<img src="../_images/ab12.png" alt="../_images/ab12.png">'))
    assert bad_alt_text(parse('<img src="x" alt="figures/fig1.png">'))
    assert not bad_alt_text(parse('<img src="x.png" alt="Training loss of ResNet-20 and plain-20 over 40 epochs.">'))
    assert not bad_alt_text(parse('<img src="x.png" alt="" role="presentation">'))


def test_checks_find_broken_links(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here">x</p>')
    (tmp_path / "img.png").write_bytes(b"")
    page = tmp_path / "page.html"
    good = parse('<a href="a.html#here">x</a><img src="img.png" alt="an image"><a href="#top" id="top">t</a>'
                 '<a href="https://example.org/x">e</a>')
    ids = lambda p: _ids(parse(Path(p).read_text()))  # noqa: E731
    page.write_text(str(good))
    assert broken_links(good, page, tmp_path, ids) == []
    bad = parse('<a href="b.html">x</a><a href="a.html#gone">y</a><img src="_images/none.png" alt="z">'
                '<link rel="stylesheet" href="_static/missing.css"><a href="#nowhere">n</a>')
    page.write_text(str(bad))
    problems = broken_links(bad, page, tmp_path, ids)
    assert len(problems) == 5, problems


def test_checks_find_visible_claims_and_glue_clutter():
    claim_cell = '<article><div class="cell_input"><pre>claim(a &lt; b, "msg")</pre></div></article>'
    assert visible_hidden_sources(parse(claim_cell))
    glue_cell = "<article><div class='cell_input'><pre>" + "\n".join(f'glue("x{i}", v)' for i in range(5)) + "</pre></div></article>"
    assert visible_hidden_sources(parse(glue_cell))
    fine = "<article><div class='cell_input'><pre>glue_all({'a': 1, 'b': 2})\nglue('c', 3)</pre></div></article>"
    assert visible_hidden_sources(parse(fine)) == []


def test_checks_find_stubs_and_mismatched_citations():
    assert stub_text(parse("<article><p>This chapter is not written yet.</p></article>"))
    assert not stub_text(parse("<article><p>Written.</p></article>"))
    bib = bibliography_labels(parse('<div class="citation" id="id3"><span class="label">[He et al., 2016]</span></div>'))
    assert bib == {"id3": "He et al., 2016"}
    page = '<span class="bibtex-citation">[<a href="references.html#id3">{}</a>]</span>'
    assert citation_labels(parse(page.format("He et al., 2016")), lambda p: bib) == []
    assert citation_labels(parse(page.format("2016")), lambda p: bib) == []  # {cite:t}: the year part
    assert citation_labels(parse(page.format("HZRS16")), lambda p: bib)
    assert citation_labels(parse(page.format("He et al., 2016").replace("id3", "id9")), lambda p: bib)


def test_author_year_labels_of_the_bibliography_extension():
    """_ext/segbook_bib.py labels: one, two, three+ authors, LaTeX accents, clashes get a, b."""
    pybtex_db = pytest.importorskip("pybtex.database")
    pytest.importorskip("sphinxcontrib.bibtex")
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import segbook_bib
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    data = pybtex_db.parse_string(r"""
        @misc{a, author = {Krizhevsky, Alex}, title = {T1}, year = {2009}}
        @misc{b, author = {Kr{\"a}henb{\"u}hl, Philipp and Koltun, Vladlen}, title = {T2}, year = {2011}}
        @misc{c, author = {He, K. and Zhang, X. and Ren, S. and Sun, J.}, title = {T3}, year = {2016}}
        @misc{d, author = {Chen, L. and Papandreou, G. and Kokkinos, I.}, title = {Zeta}, year = {2018}}
        @misc{e, author = {Chen, L. and Zhu, Y. and Papandreou, G.}, title = {Alpha}, year = {2018}}
    """, "bibtex")
    style = segbook_bib.SegbookStyle()
    entries = style.sort(data.entries.values())
    labels = dict(zip((e.key for e in entries), style.format_labels(entries)))
    assert labels == {"a": "Krizhevsky, 2009", "b": "Krähenbühl and Koltun, 2011", "c": "He et al., 2016",
                      "e": "Chen et al., 2018a", "d": "Chen et al., 2018b"}  # same label: ordered by title


# ----------------------------------------------------------------------------------------------
# The built book
# ----------------------------------------------------------------------------------------------
def _pages() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if not (set(p.relative_to(HTML).parts) & SKIP_DIRS))


def _is_redirect(soup) -> bool:
    """The root ``index.html`` is a bare ``<meta http-equiv="refresh">`` to the intro."""
    return soup.find("meta", attrs={"http-equiv": re.compile("refresh", re.I)}) is not None


def _stale_reason():
    if not (HTML / "index.html").exists():
        return f"{HTML.relative_to(ROOT)} is absent: build the book first (jupyter-book build . -W -n --keep-going)"
    # Each chapter against its own page: an incremental build rewrites only the pages whose source
    # changed (the index, search and other pages keep their old times). A change of _config.yml or
    # _toc.yml rebuilds every page, so those are compared with the oldest page.
    oldest = min(p.stat().st_mtime for p in _pages())
    newer = []
    for src in sorted(p for p in CHAPTERS.iterdir() if p.suffix in (".md", ".ipynb")):
        page = HTML / "chapters" / f"{src.stem}.html"
        if not page.exists() or src.stat().st_mtime > page.stat().st_mtime:
            newer.append(src.name)
    newer += [p.name for p in (ROOT / "_config.yml", ROOT / "_toc.yml") if p.stat().st_mtime > oldest]
    if newer:
        return f"_build/html is older than {', '.join(sorted(newer))}: rebuild the book before checking it"
    return None


built = pytest.mark.skipif(_stale_reason() is not None, reason=str(_stale_reason()))

_soups: dict[Path, object] = {}


def _soup(path: Path):
    path = Path(path).resolve()
    if path not in _soups:
        _soups[path] = parse(path.read_text(encoding="utf-8"))
    return _soups[path]


def _page_ids(path: Path) -> set[str]:
    return _ids(_soup(path))


def _check_all(check) -> None:
    problems = []
    for page in _pages():
        problems += [f"{page.relative_to(HTML)}: {p}" for p in check(page, _soup(page))]
    assert not problems, f"{len(problems)} problem(s) in the built book:\n" + "\n".join(problems)


@built
def test_every_chapter_has_a_page():
    missing = [p.name for p in CHAPTERS.iterdir() if p.suffix in (".md", ".ipynb")
               if not (HTML / "chapters" / f"{p.stem}.html").exists()]
    assert not missing, f"chapters without a built page: {missing}"


@built
def test_no_raw_glue():
    _check_all(lambda page, soup: raw_glue(soup))


@built
def test_no_nan_in_tables():
    _check_all(lambda page, soup: nan_in_tables(soup))


@built
def test_images_have_meaningful_alt_text():
    _check_all(lambda page, soup: bad_alt_text(soup))


@built
def test_no_broken_internal_links_or_assets():
    _check_all(lambda page, soup: broken_links(soup, page.resolve(), HTML.resolve(), _page_ids))


@built
def test_no_visible_claims_or_glue_clutter():
    _check_all(lambda page, soup: visible_hidden_sources(soup))


@built
def test_no_stub_page_for_a_written_chapter():
    written = {p.stem for p in CHAPTERS.glob("*.ipynb")}
    _check_all(lambda page, soup: stub_text(soup) if page.stem in written else [])


@built
def test_citations_read_like_their_bibliography_labels():
    def labels_of(path: str) -> dict:
        target = (HTML / "chapters" / path).resolve() if path else None
        return bibliography_labels(_soup(target)) if target and target.exists() else {}

    n_citations = sum(len(_soup(p).find_all("span", class_="bibtex-citation")) for p in _pages())
    assert n_citations > 0, "no citations found: did the bibtex HTML change?"
    _check_all(lambda page, soup: citation_labels(soup, lambda path: labels_of(path)))


@built
def test_chapters_are_numbered_in_the_navigation():
    nav = _soup(HTML / "chapters" / "intro.html").find("nav", class_="bd-docs-nav") or _soup(HTML / "chapters" / "intro.html")
    titles = {a["href"].split("#")[0]: a.get_text(" ", strip=True) for a in nav.find_all("a", href=True)}
    numbered = [p for p in CHAPTERS.iterdir() if re.match(r"\d\d_", p.name) and p.suffix in (".md", ".ipynb")]
    assert numbered
    for p in numbered:
        title = titles.get(f"{p.stem}.html", "")
        assert re.match(rf"{int(p.name[:2])}\. ", title), f"{p.stem} is not numbered in the navigation: {title!r}"


@built
def test_pages_load_the_book_stylesheet():
    assert (HTML / "_static" / "segbook.css").exists()
    _check_all(lambda page, soup: [] if _is_redirect(soup) or any("segbook.css" in (link.get("href") or "")
                                                                  for link in soup.find_all("link"))
               else ["does not load _static/segbook.css"])


# ----------------------------------------------------------------------------------------------
# Offline: no page needs a script or stylesheet from the network (MathJax is vendored)
# ----------------------------------------------------------------------------------------------
def external_assets(soup) -> list[str]:
    """Scripts and stylesheets a page loads from another site (a CDN): missing offline."""
    problems = []
    for tag, attr in (("script", "src"), ("link", "href")):
        for t in soup.find_all(tag):
            url = t.get(attr) or ""
            if tag == "link" and "stylesheet" not in (t.get("rel") or []):
                continue
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"<{tag} {attr}={url!r}> loads from the network")
    return problems


def test_checks_find_external_assets():
    assert external_assets(parse('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'))
    assert external_assets(parse('<link rel="stylesheet" href="//fonts.example.org/a.css">'))
    assert not external_assets(parse('<script src="../_static/mathjax/tex-chtml.js"></script>'
                                     '<link rel="canonical" href="https://segbook.github.io/segbook/">'))


@built
def test_pages_load_no_script_or_style_from_the_network():
    _check_all(lambda page, soup: external_assets(soup))
    mathjax = HTML / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.exists(), "MathJax is not in _static/mathjax (the book extra installs sphinx-mathjax-offline)"
    assert "3." in mathjax.read_text(encoding="utf-8", errors="replace")[:200000], "not MathJax 3?"


# ----------------------------------------------------------------------------------------------
# Colab: the rocket button opens colab/NAME.ipynb, whose links all land in this book
# ----------------------------------------------------------------------------------------------
def _md_links(text: str) -> list[tuple[str, str]]:
    return re.findall(r"\[([^\[\]]+)\]\(([^()\s]+)\)", text)


@built
def test_launch_button_opens_the_colab_notebook_and_the_others_the_sources():
    problems = []
    for page in sorted((HTML / "chapters").glob("[0-9][0-9]_*.html")):
        soup = _soup(page)
        colab = [a["href"] for a in soup.find_all("a", href=True) if "colab.research.google.com" in a["href"]]
        want = f"/blob/main/colab/{page.stem}.ipynb"
        if not colab or not all(url.endswith(want) for url in colab):
            problems.append(f"{page.name}: Colab button {colab} does not open ...{want}")
        if not (ROOT / "colab" / f"{page.stem}.ipynb").exists():
            problems.append(f"{page.name}: colab/{page.stem}.ipynb is missing (python tools/make_colab.py)")
        repo = [a["href"] for a in soup.find_all("a", href=True) if a["href"].startswith("https://github.com/")]
        if any("/colab/" in url for url in repo):
            problems.append(f"{page.name}: a repository/edit button points at colab/: {repo}")
        sources = [a["href"] for a in soup.find_all("a", href=True) if "_sources/" in a["href"]]
        if sources and not any(url.endswith(f"{page.stem}.ipynb") for url in sources):
            problems.append(f"{page.name}: the download button does not offer the chapter source: {sources}")
    assert not problems, "\n".join(problems)


@built
def test_colab_links_land_on_this_book_with_its_numbers_and_labels():
    """Every link of a Colab notebook into the HTML book names a built page and anchor; "Fig. N.M"
    and "(He et al., 2016)" read as the built book numbers and labels them."""
    import json

    yaml = pytest.importorskip("yaml")
    base = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["baseurl"].rstrip("/") + "/"
    bib = bibliography_labels(_soup(HTML / "chapters" / "references.html"))
    problems, n_links = [], 0
    for nb_path in sorted((ROOT / "colab").glob("*.ipynb")):
        cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for label, url in _md_links(text):
            if not url.startswith(base):
                continue
            n_links += 1
            parts = urlsplit(url[len(base):])
            page = HTML / unquote(parts.path)
            where = f"colab/{nb_path.name}: [{label}]({url})"
            if not page.exists():
                problems.append(f"{where}: no page {page.relative_to(HTML)} in the built book")
                continue
            fragment = unquote(parts.fragment)
            if fragment and fragment not in _page_ids(page):
                problems.append(f"{where}: no element with id {fragment!r} in {page.name}")
                continue
            if page.name == "references.html":
                wanted = bib.get(fragment, "")
                who, _, year = wanted.rpartition(", ")
                if label not in (wanted, f"{who} ({year})"):
                    problems.append(f"{where}: the bibliography labels this entry [{wanted}]")
            elif m := re.fullmatch(r"Fig\. (\d+(?:\.\d+)?)", label):
                element = _soup(page).find(id=fragment)
                number = element.find(class_="caption-number") if element else None
                shown = number.get_text(" ", strip=True).rstrip(":. ") if number else None
                if shown != f"Fig. {m.group(1)}":
                    problems.append(f"{where}: the book numbers this figure {shown!r}")
    assert n_links > 50, f"only {n_links} links into the book found in colab/: did the link format change?"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


# ----------------------------------------------------------------------------------------------
# In a real browser (Chromium + ChromeDriver, network off): phone drawers, no sideways scroll,
# maths typeset by the vendored MathJax, a screenshot of every page at 1280 and 390 px
# ----------------------------------------------------------------------------------------------
WIDTHS = {1280: 900, 390: 844}  # CSS px: a laptop window, an iPhone 12-15 screen
SCREENSHOTS = Path(os.environ.get("SEGBOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
# Boxes that may scroll sideways inside the page: code, tables, display maths, notebook outputs.
SCROLLERS = ("pre, div.highlight, div.math, mjx-container, div.cell_output, div.output, div.text_html, "
             ".pst-scrollable-table-container, div.output_area")

# MathJax is a deferred script, so it has normally run by the time the page's load event ends
# the navigation; on a loaded 2-core machine it can still be a moment behind. Poll for its startup
# promise for up to 30 s, then say what the browser knows about the script's request.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const started = Date.now();
function fetched() {
  const el = document.querySelector("script[src*='mathjax']");
  if (!el) return "no MathJax script tag on the page";
  const e = performance.getEntriesByName(el.src)[0];
  if (!e) return "the browser never requested " + el.src;
  return "request for the script: status " + (e.responseStatus || "?") + ", " + e.transferSize + " bytes over the wire, "
    + e.decodedBodySize + " decoded, " + Math.round(e.duration) + " ms";
}
function poll() {
  // A page without maths (search, genindex, the bibliography) has no MathJax script to wait for.
  if (!document.querySelector("script[src*='mathjax']")) { done(""); return; }
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    const timer = setTimeout(() => done("timed out typesetting"), 60000);
    mj.startup.promise.then(() => { clearTimeout(timer); done(""); }, (e) => { clearTimeout(timer); done("failed: " + e); });
  } else if (Date.now() - started > 30000) {
    done((mj && mj.version ? "no startup promise" : "MathJax did not load") + " within 30 s; " + fetched()
         + "; document " + document.readyState);
  } else {
    setTimeout(poll, 100);
  }
}
poll();
"""

PAGE_CHECKS = r"""
const SCROLLERS = arguments[0];
const vw = document.documentElement.clientWidth;
function describe(el) {
  let s = el.tagName.toLowerCase();
  if (el.id) s += "#" + el.id;
  const cls = typeof el.className === "string" ? el.className.trim().split(/\s+/).filter(Boolean).slice(0, 3) : [];
  if (cls.length) s += "." + cls.join(".");
  return s;
}
function path(el) {
  const parts = [];
  for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) parts.unshift(describe(e));
  const section = el.closest("section[id]");
  const text = (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 70);
  return (section ? "section #" + section.id + ": " : "") + parts.join(" > ") + (text ? " (" + JSON.stringify(text) + ")" : "");
}
function ancestors(el) {
  const out = [];
  for (let a = el.parentElement; a && a !== document.body && a !== document.documentElement; a = a.parentElement) out.push(a);
  return out;
}
function inScroller(el) {  // inside a code/table/maths box that scrolls sideways on its own
  return ancestors(el).some((a) => a.matches(SCROLLERS) && ["auto", "scroll"].includes(getComputedStyle(a).overflowX));
}
function clipper(el) {  // the nearest ancestor that clips or scrolls sideways
  return ancestors(el).find((a) => getComputedStyle(a).overflowX !== "visible") || null;
}
const out = {vw: vw, scrollWidth: document.documentElement.scrollWidth, wide: [], rawMath: [], mathErrors: [],
             mathSpans: document.querySelectorAll("span.math, div.math").length,
             typeset: document.querySelectorAll("mjx-container").length,
             mathjax: window.MathJax && window.MathJax.version ? window.MathJax.version : null,
             mathjaxSrc: (document.querySelector("script[src*='mathjax']") || {}).src || null};
const wide = [];
for (const el of document.body.querySelectorAll("*")) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right <= vw + 1) continue;
  const cs = getComputedStyle(el);
  if (cs.visibility === "hidden" || cs.position === "fixed") continue;
  if (el.closest("dialog:not([open]), [aria-hidden='true'], .visually-hidden, .sr-only, mjx-assistive-mml")) continue;
  if (inScroller(el)) continue;
  const c = clipper(el);
  if (c && getComputedStyle(c).position === "fixed") continue;
  if (wide.some((w) => w.contains(el))) continue;
  wide.push(el);
  out.wide.push(path(el) + ": right edge at " + Math.round(r.right) + " px" + (c ? ", cut off by " + describe(c) : ""));
}
const walker = document.createTreeWalker(document.querySelector("article") || document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const t = n.nodeValue;
  if (!/\\\(|\\\[|\$\$/.test(t)) continue;
  if (n.parentElement.closest("script, style, pre, code, textarea, mjx-container, .highlight")) continue;
  out.rawMath.push(path(n.parentElement) + ": raw TeX " + JSON.stringify(t.trim().slice(0, 60)));
}
for (const e of document.querySelectorAll("mjx-merror")) out.mathErrors.push(path(e) + ": " + (e.getAttribute("data-mjx-error") || ""));
// every table of the article numbered by segbook.js, in page order, its caption starting with the number
const num = document.querySelector("article h1 .section-number");
const chapter = num ? num.textContent.trim().replace(/\.$/, "") : "";
out.tables = [];
(document.querySelector("article") || document.body).querySelectorAll("table.segbook-results, table.table").forEach((t, i) => {
  const want = "Table " + (chapter ? chapter + "." : "") + (i + 1);
  const cap = t.querySelector(":scope > caption");
  const text = cap ? cap.textContent.replace(/\s+/g, " ").trim() : "";
  if (!(text === want || text.startsWith(want + ": ")) || /Table \d+(\.\d+)? .*Table /.test(text))
    out.tables.push(path(t) + ": caption " + JSON.stringify(text.slice(0, 60)) + ", expected it to start with " + JSON.stringify(want));
});
return out;
"""

DRAWER_CHECK = r"""
const kind = arguments[0];
const dialog = document.getElementById("pst-" + kind + "-sidebar-modal");
if (!dialog) return {error: "no #pst-" + kind + "-sidebar-modal on the page"};
const r = dialog.getBoundingClientRect();
const links = Array.from(dialog.querySelectorAll("a[href]")).filter((a) => {
  const b = a.getBoundingClientRect();
  return b.width > 0 && b.height > 0 && b.left >= 0 && b.right <= window.innerWidth + 1 && b.top < window.innerHeight;
});
return {open: dialog.open, width: Math.round(r.width), height: Math.round(r.height), visibleLinks: links.length,
        firstLink: links.length ? links[0].textContent.trim().slice(0, 40) : ""};
"""


def _browser_or_skip():
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import browser
    finally:
        sys.path.remove(str(ROOT / "tests"))
    found = browser.find_browser()
    if found is None:
        why = "no chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("SEGBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SEGBOOK_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return browser, found


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium (network off) and a local server of ``_build/html``."""
    browser, found = _browser_or_skip()
    with browser.StaticServer(HTML) as server, browser.Browser(*found) as b:
        b.server_url = server.url
        yield b


def _load(b, url: str, width: int) -> str:
    """Open ``url`` at ``width`` and wait for MathJax; returns "" or why MathJax is not done."""
    b.set_viewport(width, WIDTHS.get(width, 900))
    b.open(url)
    wait = b.run_async(WAIT_FOR_MATHJAX)
    if wait:
        # A script request the local test server dropped is not a fault of the book; a missing or
        # broken MathJax fails again on the reload, and then the first reason is reported too.
        b.open(url)
        again = b.run_async(WAIT_FOR_MATHJAX)
        wait = again and f"{again} (and on the first load: {wait})"
    return wait


def _report(problems: list[str], limit: int = 60) -> str:
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n".join(problems[:limit]) + more


def _page_problems(result: dict, mathjax_wait: str, base_url: str) -> list[str]:
    problems = []
    if result["scrollWidth"] > result["vw"] + 1:
        problems.append(f"the page scrolls sideways: {result['scrollWidth']} px wide in a {result['vw']} px window")
    problems += [f"wider than the window outside a code/table/maths scroller: {w}" for w in result["wide"]]
    if result["mathSpans"]:
        if mathjax_wait:
            problems.append(f"MathJax: {mathjax_wait} (script {result['mathjaxSrc']})")
        if not (result["mathjaxSrc"] or "").startswith(base_url):
            problems.append(f"MathJax is not loaded from the book itself: {result['mathjaxSrc']}")
        if not str(result["mathjax"] or "").startswith("3."):
            problems.append(f"MathJax version {result['mathjax']!r}, not 3.x")
        if result["typeset"] < result["mathSpans"]:
            problems.append(f"only {result['typeset']} of {result['mathSpans']} formulas typeset")
    problems += result["rawMath"] + [f"TeX error: {e}" for e in result["mathErrors"]]
    problems += [f"table not numbered: {t}" for t in result.get("tables", [])]
    return problems


@built
@pytest.mark.parametrize("width", sorted(WIDTHS, reverse=True))
def test_pages_in_a_browser_fit_the_window_and_show_typeset_maths(chromium, width):
    """Every page at ``width`` px, offline: nothing wider than the window outside a scroller, maths
    typeset by the vendored MathJax 3 (no raw ``\\(``), and a screenshot that is not blank
    (saved to ``_build/screenshots/`` to look at)."""
    out_dir = SCREENSHOTS / str(width)
    out_dir.mkdir(parents=True, exist_ok=True)
    problems, blank = [], []
    for page in _pages():
        if _is_redirect(_soup(page)):
            continue
        name = page.relative_to(HTML).as_posix()
        wait = _load(chromium, chromium.server_url + name, width)
        result = chromium.run(PAGE_CHECKS, SCROLLERS)
        problems += [f"{name} at {width} px: {p}" for p in _page_problems(result, wait, chromium.server_url)]
        shot = chromium.screenshot(out_dir / f"{page.stem}.png")
        if (ink := ink_fraction(shot)) < MIN_INK:
            blank.append(f"{name} at {width} px: {ink:.2%} of pixels drawn ({shot})")
    assert not blank, "blank pages:\n" + "\n".join(blank)
    assert not problems, f"{len(problems)} problem(s) (screenshots in {out_dir}):\n" + _report(problems)


@built
def test_phone_menu_and_contents_buttons_open_their_drawers(chromium):
    """At 390 px, tapping the visible menu button opens the site navigation, and the contents
    button the page's table of contents (pydata-sphinx-theme #2451, fixed by _static/segbook.js);
    at 1280 px the menu button folds the sidebar away.

    One load per page: the drawers do not depend on the maths, so this test does not wait for
    MathJax (the page test above does); the menu drawer is closed again before the contents
    button is tapped."""
    problems = []
    out_dir = SCREENSHOTS / "drawers"
    out_dir.mkdir(parents=True, exist_ok=True)
    chromium.set_viewport(390, WIDTHS.get(390, 900))
    for page in _pages():
        if _is_redirect(_soup(page)):
            continue
        name = page.relative_to(HTML).as_posix()
        chromium.open(chromium.server_url + name)   # returns after the load event: the theme's scripts have run
        for kind, what in (("primary", "menu"), ("secondary", "contents")):
            visible = [el for el, shown in zip(chromium.find(f".{kind}-toggle"), chromium.run(
                f"return Array.from(document.querySelectorAll('.{kind}-toggle')).map(e => "
                "{ const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && r.bottom > 0; })"))
                if shown]
            if not visible:
                if kind == "primary":
                    problems.append(f"{name} at 390 px: no visible {what} button (.{kind}-toggle)")
                continue  # a page without its own table of contents (search, genindex) has no contents button
            chromium.click(visible[0])
            time.sleep(0.6)  # the drawer's transition
            state = chromium.run(DRAWER_CHECK, kind)
            if state.get("error") or not state["open"] or state["visibleLinks"] == 0:
                problems.append(f"{name} at 390 px: tapping the {what} button (.{kind}-toggle) does not open "
                                f"#pst-{kind}-sidebar-modal with links in view: {state}")
            chromium.screenshot(out_dir / f"{page.stem}-{what}-390.png")
            # close it again, as the drawer's own close does, so that the next button is not covered
            chromium.run(f"const d = document.getElementById('pst-{kind}-sidebar-modal'); if (d && d.open) d.close();")
            time.sleep(0.3)
    # desktop: the visible menu button folds the primary sidebar away (sphinx-book-theme's behaviour)
    chromium.set_viewport(1280, WIDTHS.get(1280, 900))
    chromium.open(chromium.server_url + "chapters/intro.html")
    buttons = [el for el, shown in zip(chromium.find(".primary-toggle"), chromium.run(
        "return Array.from(document.querySelectorAll('.primary-toggle')).map(e => e.getBoundingClientRect().width > 0)"))
        if shown]
    if buttons:
        chromium.click(buttons[0])
        time.sleep(0.6)
        if not chromium.run("return document.getElementById('pst-primary-sidebar').classList.contains('pst-sidebar-hidden')"):
            problems.append("chapters/intro.html at 1280 px: the menu button does not fold the sidebar away")
    else:
        problems.append("chapters/intro.html at 1280 px: no visible menu button (.primary-toggle)")
    assert not problems, "\n".join(problems)


def test_browser_checks_find_what_they_look_for(tmp_path):
    """The page checks above flag a page that scrolls sideways, a box cut off outside a scroller and
    raw TeX, and accept a wide code block that scrolls on its own."""
    browser, found = _browser_or_skip()
    meta = "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    (tmp_path / "bad.html").write_text(
        "<html><head>" + meta + "</head><body style='margin:0'><article><section id='s1'><p>fine</p>"
        "<div style='width:2000px'>a wide box</div>"
        "<div style='overflow:hidden;width:100px'><div style='width:900px'>cut</div></div>"
        "<p>raw maths \\(x^2\\) here</p></section></article></body></html>")
    (tmp_path / "good.html").write_text(
        "<html><head>" + meta + "</head><body style='margin:0'><article><section id='s1'><p>fine</p>"
        "<pre style='overflow-x:auto'>" + "x" * 500 + "</pre><code>\\(kept in code\\)</code>"
        "</section></article></body></html>")
    with browser.StaticServer(tmp_path) as server, browser.Browser(*found) as b:
        b.set_viewport(390, 844)
        b.open(server.url + "bad.html")
        bad = _page_problems(b.run(PAGE_CHECKS, SCROLLERS), "", server.url)
        b.open(server.url + "good.html")
        good = _page_problems(b.run(PAGE_CHECKS, SCROLLERS), "", server.url)
    assert any("scrolls sideways" in p for p in bad), bad
    assert any("section #s1: article > section#s1 > div" in p and "a wide box" in p for p in bad), bad
    assert any("cut off by div" in p for p in bad), bad
    assert any("raw TeX" in p for p in bad), bad
    assert good == [], good


@built
def test_tables_are_numbered_per_chapter_with_their_captions(tmp_path):
    """segbook.js numbers results tables and Markdown tables in page order as "Table <chapter>.<n>",
    keeps a caption's text after the number, replaces a table directive's own number, and the page
    check flags a table left unnumbered (here: the same page without the script)."""
    browser, found = _browser_or_skip()
    js = (ROOT / "_static" / "segbook.js").read_text()
    body = ("<article class='bd-article'><h1><span class='section-number'>4. </span>U-Net</h1>"
            "<table class='segbook-results'><caption>a title</caption><tr><td>1</td></tr></table>"
            "<table class='segbook-results'><tr><td>2</td></tr></table>"
            "<table class='table'><caption><span class='caption-number'>Table 4.1 </span>"
            "<span class='caption-text'>a directive</span></caption><tr><td>3</td></tr></table>"
            "<table class='indextable'><tr><td>not a content table</td></tr></table></article>")
    (tmp_path / "with.html").write_text(f"<html><body>{body}<script>{js}</script></body></html>")
    (tmp_path / "without.html").write_text(f"<html><body>{body}</body></html>")
    with browser.StaticServer(tmp_path) as server, browser.Browser(*found) as b:
        b.set_viewport(1280, 900)
        b.open(server.url + "with.html")
        captions = b.run("return Array.from(document.querySelectorAll('table')).map("
                         "(t) => (t.querySelector('caption') || {textContent: ''}).textContent)")
        good = _page_problems(b.run(PAGE_CHECKS, SCROLLERS), "", server.url)
        b.open(server.url + "without.html")
        bad = _page_problems(b.run(PAGE_CHECKS, SCROLLERS), "", server.url)
    assert captions == ["Table 4.1: a title", "Table 4.2", "Table 4.3: a directive", ""], captions
    assert good == [], good
    assert sum("table not numbered" in p for p in bad) == 3, bad


def ink_fraction(png: Path) -> float:
    """Fraction of pixels that differ from the most common colour (0 for a blank page)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(pixels.astype(int) - background).sum(1) > 30).mean())


def test_ink_fraction_tells_blank_from_drawn(tmp_path):
    import numpy as np
    from PIL import Image

    canvas = np.full((100, 100, 3), 255, np.uint8)
    Image.fromarray(canvas).save(tmp_path / "blank.png")
    canvas[10:20, 10:60] = 0  # a line of "text": 5% of the pixels
    Image.fromarray(canvas).save(tmp_path / "text.png")
    assert ink_fraction(tmp_path / "blank.png") == 0.0 < MIN_INK < ink_fraction(tmp_path / "text.png") == 0.05
