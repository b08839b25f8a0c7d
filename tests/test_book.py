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

With ``chromium`` (Debian package ``chromium``) or ``chromium-headless-shell`` on PATH, every
page is also screenshotted at 1280 and 390 px wide and must not be blank.

The checking functions at the top are tested on small HTML snippets below, so each check is
known to fail on the fault it looks for.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    built = min(p.stat().st_mtime for p in _pages())
    sources = [p for p in CHAPTERS.iterdir() if p.suffix in (".md", ".ipynb")] + [ROOT / "_config.yml", ROOT / "_toc.yml"]
    newer = [p.name for p in sources if p.stat().st_mtime > built]
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
# Screenshots (only where Chromium is installed)
# ----------------------------------------------------------------------------------------------
def _chromium():
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(browser: str, page: Path, out: Path, width: int, height: int = 1600) -> None:
    """Headless screenshot of ``page`` at ``width x height`` CSS px into ``out`` (PNG); one retry."""
    profile = out.with_suffix(".profile")  # one profile per run: a shared one hands the page to another process
    profile.mkdir(exist_ok=True)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
           f"--screenshot={out}", page.resolve().as_uri()]
    why = ""
    for attempt in range(2):
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                                 env={**os.environ, "HOME": str(profile)})
        except subprocess.TimeoutExpired:
            why = "timed out after 240 s (a loaded machine?)"
            continue
        if run.returncode == 0 and out.exists():
            return
        why = f"exit {run.returncode}: {run.stderr[-600:]}"
    raise RuntimeError(f"{browser} made no screenshot of {page.name} at {width} px: {why}")


def ink_fraction(png: Path) -> float:
    """Fraction of pixels that differ from the most common colour (0 for a blank page)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(pixels.astype(int) - background).sum(1) > 30).mean())


@built
@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_pages_are_not_blank_in_a_browser(width, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    browser = _chromium()
    pages = [p for p in _pages() if not _is_redirect(_soup(p))]  # index.html only redirects to the intro
    outs = [tmp_path / f"{i:02d}-{page.stem}-{width}.png" for i, page in enumerate(pages)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda po: screenshot(browser, po[0], po[1], width), zip(pages, outs)))
    blank = []
    for page, out in zip(pages, outs):
        ink = ink_fraction(out)
        if ink < MIN_INK:
            blank.append(f"{page.relative_to(HTML)} at {width} px: {ink:.2%} of pixels drawn")
    assert not blank, "blank pages:\n" + "\n".join(blank)


def test_ink_fraction_tells_blank_from_drawn(tmp_path):
    import numpy as np
    from PIL import Image

    canvas = np.full((100, 100, 3), 255, np.uint8)
    Image.fromarray(canvas).save(tmp_path / "blank.png")
    canvas[10:20, 10:60] = 0  # a line of "text": 5% of the pixels
    Image.fromarray(canvas).save(tmp_path / "text.png")
    assert ink_fraction(tmp_path / "blank.png") == 0.0 < MIN_INK < ink_fraction(tmp_path / "text.png") == 0.05
