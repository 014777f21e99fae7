"""The docs stay honest: the README is a front page, and every relative link and image in the README
and docs/ (and the model card beside the shipped weights) points at something that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("README.md")])
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code: links there are examples, not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_{2}", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for line in text.splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    bad = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    return bad


def test_the_checker_finds_links_images_and_anchors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "b.md").write_text("# Speed (CIFAKE, 2 CPU cores)\n\n## `aidetect flux ...`\n")
    page = tmp_path / "p.md"
    page.write_text("![pic](a.png) [ok](b.md#speed-cifake-2-cpu-cores) [ok](b.md#aidetect-flux-) [web](https://x.org)\n"
                    "`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n"
                    "[gone](missing.md) ![gone](missing.png) [bad anchor](b.md#nope) [self](#nope)\n")
    global ROOT
    root, ROOT = ROOT, tmp_path
    try:
        bad = broken_links(page)
    finally:
        ROOT = root
    assert [b.split(" ")[0] for b in bad] == ["missing.md", "missing.png", "b.md#nope", "#nope"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    assert not broken_links(page), f"{page.relative_to(ROOT)}: broken links: {broken_links(page)}"


def test_every_file_in_docs_is_linked():
    """No orphan: every page, table, log and figure under docs/ is linked from the README or a docs page."""
    linked = set()
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and target.partition("#")[0]:
                linked.add((page.parent / target.partition("#")[0]).resolve())
    orphans = [p.relative_to(ROOT) for p in (ROOT / "docs").rglob("*") if p.is_file() and p.resolve() not in linked]
    assert not orphans, f"files in docs/ that no page links to (link them, e.g. from docs/results.md): {orphans}"


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md is over 200 lines: move the detail to docs/"
    # Test counts and timings go stale the day they are written (the README once quoted three, all wrong).
    counts = re.findall(r"\b\d[\d,]*\s+(?:tests?|passed|failed|skipped|errors?)\b", text, flags=re.I)
    assert not counts, f"README quotes test counts: {counts}"
    timings = re.findall(r"\b\d+(?:\.\d+)?\s*(?:s|sec|seconds?|min|minutes?|h|hours?)\b(?![-\w])", prose(text))
    assert not timings, f"README quotes timings: {timings}"
    for needed in ("pip install", 'pytest -q -m "not slow"', "python -m pytest -q",
                   "python train.py data=flux aug=inverted_saturated", "docs/results/modern.md",
                   "docs/results/flux.md"):
        assert needed in text, f"README lacks {needed!r}"
