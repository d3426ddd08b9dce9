"""Every relative link of the README and of docs/*.md leads to a file of the repository, and
every #anchor to a heading of the page it names."""

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

# [text](target) outside code; a target with a scheme (https:, mailto:) is not ours to check.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`]*`")


def links_of(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


def anchors_of(page: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", page.read_text())
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_there_are_pages_and_links_to_check():
    assert (REPO_ROOT / "docs").is_dir()
    assert sum(len(links_of(page)) for page in PAGES) > 10


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in links_of(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert broken == []


def test_the_readme_fits_on_two_screens():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 100


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_no_shell_command_holds_a_unicode_ellipsis(page):
    # A command copied into a shell must run as written: '…' is never a shell word.
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```", page.read_text(), re.M | re.S)
    commands = [
        line
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert [line for line in commands if "\u2026" in line] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_link_closes_on_its_line(page):
    # A link cut short ("[text](target" and a line break) renders as text, and the link check
    # above never sees it.
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    unclosed = [line for line in text.splitlines() if re.search(r"\]\([^)\s]*$", line)]
    assert unclosed == []


def test_no_name_at_the_top_of_the_tree_is_a_fragment_of_a_command():
    # What a stray shell redirection leaves (a file named after a fragment of a command) is
    # noticed here rather than by a reader of the repository.
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    top = {path.split("/")[0] for path in tracked}
    strange = sorted(name for name in top if not re.fullmatch(r"[\w.\-]+", name))
    assert strange == []
