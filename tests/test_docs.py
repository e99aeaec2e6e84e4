"""The short README and the docs site hold together (CI builds the site itself: `make docs`)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _readme() -> str:
    return README.read_text()


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _slug(heading: str) -> str:
    """The anchor MkDocs (and, for plain headings, GitHub) gives a Markdown heading."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+?)\s*$", text, flags=re.M)}


def _table(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_readme_is_short_and_names_the_two_commands():
    text = _readme()
    assert len(text.splitlines()) <= 200
    assert "make convert MODEL=squeezenet1_0 WEIGHTS=random" in text
    assert "make test" in text


def test_every_docs_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True and config["theme"]["name"] == "material"
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert "index.md" in nav


def test_readme_links_point_at_existing_files_and_headings():
    links = [t for t in LINK.findall(_readme()) if "://" not in t and not t.startswith("mailto:")]
    assert any(t.startswith("docs/") for t in links)
    for target in links:
        path, _, anchor = target.partition("#")
        file = REPO / path if path else README
        assert file.exists(), target
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), target


def test_no_machine_paths_in_readme_or_docs():
    for page in [README, *DOCS.rglob("*.md")]:
        assert not re.search(r"/(tmp|work|home)/", page.read_text()), page


def test_ship_quote_is_verbatim_from_the_generated_table():
    text = _readme()
    quote = text.split("<!-- ship:start", 1)[1].split("-->", 1)[1].split("<!-- ship:end -->")[0]
    lines = [line for line in quote.splitlines() if line.strip()]
    assert any(line.startswith("Ship **") for line in lines)
    assert "](results/ship-cpu-1t.md)" in text
    source = (REPO / "results" / "ship-cpu-1t.md").read_text()
    section = source.split("## mobilenet_v2\n", 1)[1].split("\n## ", 1)[0]
    for line in lines:
        assert line in section.splitlines(), line


def test_exit_code_table_is_the_same_in_readme_and_docs():
    header = "| code | meaning | examples |"
    readme = _table(_readme(), header)
    assert readme == _table((DOCS / "failures.md").read_text(), header)
    codes = {int(row.split("|")[1]) for row in readme[2:]}
    assert codes == {0, 1, 2, 3, 130, 143}
