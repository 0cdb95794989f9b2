"""summary.html: the summary's Markdown rendered by Python-Markdown, with the report's own plots inside.

MLflow's artifact viewer shows a Markdown file's image links as text and an HTML file as a page, so the page
carries its images as data URIs. The text holds values read from the folder (labels, table cells), so the
page is confined: raw HTML is shown as text, only the report's own plots are embedded, and only web and
relative links are kept.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from xml.etree import ElementTree

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

OWN_PLOT = re.compile(r"[A-Za-z0-9_.-]+\.png")  # a plot this report saved in its own folder, by bare name
# web links and relative paths (no javascript: or file:); no `&`: an entity (`&#58;`) would spell a `:` the
# browser decodes after this check
SAFE_HREF = re.compile(r"https?://[^\s&]+|[^:\s&]*")
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "img{max-width:100%}code{background:#f4f4f4}")


class _Confine(Treeprocessor):
    def __init__(self, md: markdown.Markdown, out: Path):
        super().__init__(md)
        self.out = out

    def run(self, root: ElementTree.Element) -> None:
        for el in root.iter():
            if el.tag == "img":
                src, path = el.get("src", ""), self.out / el.get("src", "")
                if OWN_PLOT.fullmatch(src) and path.is_file() and not path.is_symlink():
                    el.set("src", "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())
                else:  # any other file the text names stays a name: it may be anything the user can read
                    alt, tail = el.get("alt", ""), el.tail
                    el.clear()
                    el.tag, el.text, el.tail = "span", f"[image: {alt}]", tail
            elif el.tag == "a" and not SAFE_HREF.fullmatch(el.get("href", "")):
                el.set("href", "#")


class _ConfinedPage(Extension):
    def __init__(self, out: Path):
        super().__init__()
        self.out = out

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Python-Markdown's name)
        md.preprocessors.deregister("html_block")  # raw HTML in the text is text, never markup
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_Confine(md, self.out), "confine", 0)


def html_page(lines: list[str], out: Path, title: str) -> str:
    """The summary's Markdown `lines` as one HTML page, with the plots in the folder `out` inside."""
    body = markdown.markdown("\n".join(lines), extensions=["tables", _ConfinedPage(out)])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
