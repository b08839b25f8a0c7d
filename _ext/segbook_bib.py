"""Author-year citation labels that read the same in the text and in the bibliography.

sphinxcontrib-bibtex's ``author_year`` reference style writes "[He et al., 2016]" in the text,
but the bibliography labels its entries with pybtex's ``alpha`` style ("[HZRS16]"), so the reader
cannot match the two. This extension registers

* a pybtex label style ``segbook_author_year``: "He et al., 2016" (one author: "Krizhevsky,
  2009"; two: "Tan and Le, 2019"; three or more: "He et al., 2016"), with "a", "b", ... appended
  when two entries would get the same label (e.g. two "Chen et al., 2018");
* a pybtex formatting style ``segbook`` (pybtex ``unsrt`` entries, sorted by first author, year
  and title, labelled as above): set ``bibtex_default_style: segbook``;
* a sphinxcontrib-bibtex reference style ``segbook_author_year``: ``{cite}`` (= ``{cite:p}``)
  prints the entry's label in brackets, "[He et al., 2016]", exactly as the bibliography shows
  it, and ``{cite:t}`` prints "He et al. [2016]" (the year part of the label, so "2018a" where a
  suffix was needed): set ``bibtex_reference_style: segbook_author_year``.

Loaded from ``_config.yml`` (``sphinx.local_extensions``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, List

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from pybtex.style.template import node
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import BaseReferenceStyle, BracketStyle, GroupReferenceStyle, PersonStyle
from sphinxcontrib.bibtex.style.referencing.basic_label import BasicLabelParentheticalReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join, join2, post_text, pre_text, reference

__all__ = ["AuthorYearLabelStyle", "SegbookStyle", "SegbookReferenceStyle", "author_year_label", "setup"]

_SEP = ", "


def _plain(latex: str) -> str:
    """LaTeX name -> plain Unicode text (``Kr{\\"a}henb{\\"u}hl`` -> ``Krähenbühl``)."""
    return Text.from_latex(latex).render_as("text")


def _surname(person) -> str:
    return " ".join(_plain(part) for part in person.prelast_names + person.last_names)


def author_year_label(entry) -> str:
    """The label of one entry without a disambiguating suffix: ``"He et al., 2016"``."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    if not persons:
        who = _plain(entry.fields.get("title", entry.key))
    elif len(persons) == 1:
        who = _surname(persons[0])
    elif len(persons) == 2:
        who = f"{_surname(persons[0])} and {_surname(persons[1])}"
    else:
        who = f"{_surname(persons[0])} et al."
    return f"{who}{_SEP}{entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style: "He et al., 2016"; "a", "b", ... appended to labels that collide."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(e) for e in entries]
        counts = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearSortingStyle(BaseSortingStyle):
    """Sort by the label without suffix, then title: "Chen et al., 2015" < "Chen et al., 2017" <
    "Chen et al., 2018a" < "Chen et al., 2018b" (so the suffixes follow the reading order)."""

    def sorting_key(self, entry):
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        first = _surname(persons[0]) if persons else ""
        return (first.lower(), min(len(persons), 3), entry.fields.get("year", ""),
                _plain(entry.fields.get("title", "")).lower())


class SegbookStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entry format with author-year labels, in author-year order."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearSortingStyle


@node
def label_year(children, data):
    """The year part of the entry's label ("2016", or "2018a" when a suffix was needed)."""
    assert not children
    return Text(data["formatted_entry"].label.rsplit(_SEP, 1)[-1])


@dataclass
class _TextualReferenceStyle(BaseReferenceStyle):
    """``{cite:t}``: "He et al. [2016]" (authors as text, the label's year part as the link)."""

    bracket: BracketStyle = field(default_factory=BracketStyle)
    person: PersonStyle = field(default_factory=PersonStyle)

    def role_names(self) -> Iterable[str]:
        return [f"{alt}t{full}" for alt in ["", "al"] for full in ["", "s"]]

    def outer(self, role_name: str, children: List):
        return join(sep="; ")[children]

    def inner(self, role_name: str):
        return join(sep=" ")[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                "[" if "al" not in role_name else "",
                join2(sep1=" ", sep2=", ")[pre_text, reference[label_year], post_text],
                "]" if "al" not in role_name else "",
            ],
        ]


@dataclass
class SegbookReferenceStyle(GroupReferenceStyle):
    """``{cite}``/``{cite:p}`` -> "[He et al., 2016]" (the bibliography's label); see the module."""

    bracket: BracketStyle = field(default_factory=BracketStyle)
    person: PersonStyle = field(default_factory=lambda: PersonStyle(other=" et al."))

    def __post_init__(self):
        self.styles.extend([
            BasicLabelParentheticalReferenceStyle(bracket=self.bracket),
            _TextualReferenceStyle(bracket=self.bracket, person=self.person),
            ExtraAuthorReferenceStyle(bracket=self.bracket, person=self.person),
            ExtraLabelReferenceStyle(bracket=self.bracket),
            ExtraYearReferenceStyle(bracket=self.bracket),
            ExtraEmptyReferenceStyle(),
        ])
        super().__post_init__()


def setup(app):
    pybtex.plugin.register_plugin("pybtex.style.labels", "segbook_author_year", AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.formatting", "segbook", SegbookStyle)
    register_plugin("sphinxcontrib.bibtex.style.referencing", "segbook_author_year", SegbookReferenceStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
