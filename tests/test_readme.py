"""The README and docs/*.md are true of the tree.

Docs drift: a file moves, a flag is renamed, a Makefile target goes, and the
page that shows it still reads well. These checks read the pages as text and
hold them to the tree: every repo-relative path they show exists, every
`lnn-nav ...` command they show names a real subcommand and real options of
it, every `make X` is a Makefile target, every link (and #anchor) resolves,
and the README stays a front page. Nothing is run: no simulation, no ROS
graph; the CLI's argparse parser is only built.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
IDS = [str(p.relative_to(REPO)) for p in PAGES]

#: The README is the front page; reference lives in docs/ (issue 30).
README_MAX_LINES = 250

#: `make` targets shown that belong to another project's Makefile, not ours.
FOREIGN_MAKE_TARGETS = {"px4_sitl"}  # PX4-Autopilot's SITL build, run in its own tree

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)|<img\s[^>]*\bsrc=\"([^\"]+)\"")
# A relative path with at least one '/': it may not start right after a word
# character, '$', '/', '.', '<', '-' or '~' (a variable, an absolute path, a
# home path, or the tail of a placeholder such as <core>/x).
PATH = re.compile(r"(?<![\w$/.<~-])((?:[\w.*{},-]+/)+[\w.*{},-]*)")
# Arguments that name files a command writes: they need not exist yet.
OUTPUT_ARG = re.compile(r"(?:--out|--output|-o)(?:=|\s+)\S+")
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*|-[A-Za-z](?![\w-]))")
LNN_NAV = re.compile(r"(?:^|(?<=[\s;&(]))(?:[\w./-]*/)?lnn-nav((?:\s+\S.*)?)$")
MAKE = re.compile(r"(?:^|(?<=[\s;&(]))make\s+([A-Za-z_][\w.-]*)")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _fences(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def _prose(text: str) -> str:
    """The page without its fenced code blocks (inline code and links live here)."""
    return FENCE.sub("", text)


def _inline_spans(text: str) -> list[str]:
    # A '|' inside a table cell's code span is written '\|'.
    return [m.group(1).replace("\\|", "|") for m in INLINE.finditer(_prose(text))]


def _shell_blocks(text: str) -> list[str]:
    """Fenced blocks of shell commands (untagged ones too); Python blocks are code, not commands."""
    return [body for lang, body in _fences(text) if lang in ("", "bash", "sh", "shell", "console")]


def _shell_commands(block: str) -> list[str]:
    """One string per command: continuation lines joined, comments cut, split at ;, && and |."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        commands += [part.strip() for part in re.split(r"\s(?:;|&&|\|\||\|)\s", line) if part.strip()]
    return commands


def _without_quotes(command: str) -> str:
    # JSON option values and regexes sit in quotes; their contents are not options.
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", command)


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    out = []
    for choice in match.group(1).split(","):
        out += _expand_braces(path[: match.start()] + choice + path[match.end() :])
    return out


@lru_cache(maxsize=1)
def _ignored_patterns() -> tuple[str, ...]:
    """Top-level names .gitignore keeps out of the tree (.venv, build/, reports/, ...): outputs, not files."""
    patterns = {".git"}
    for line in (REPO / ".gitignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            patterns.add(line.strip("/"))
    return tuple(patterns)


@lru_cache(maxsize=1)
def _root_entries() -> frozenset[str]:
    """Names at the top of the repository; a path in the docs is repo-relative only if it starts with one."""
    return frozenset(
        p.name for p in REPO.iterdir() if not any(fnmatch.fnmatch(p.name, pat) for pat in _ignored_patterns())
    )


def _is_placeholder(path: str) -> bool:
    # CKPT, DIR, PATH.sdf, NAME_0.mcap, ...: upper-case words stand for what the reader supplies.
    return "..." in path or any(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[\w.]+)?", seg) for seg in path.split("/") if seg)


def _repo_paths(code: str) -> list[str]:
    """Repo-relative paths in a piece of code (an inline span or a shell block)."""
    found = []
    for match in PATH.finditer(OUTPUT_ARG.sub(" ", code)):
        path = match.group(1).rstrip(".,:;")
        if path.split("/")[0] in _root_entries() and not _is_placeholder(path):
            found.append(path)
    return found


def _exists(path: str) -> bool:
    for candidate in _expand_braces(path):
        if any(ch in candidate for ch in "*?["):
            if not list(REPO.glob(candidate)):
                return False
        elif not (REPO / candidate).exists():
            return False
    return True


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def _anchors(page: Path) -> frozenset[str]:
    anchors: set[str] = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(_text(page)), re.M):
        slug, n = _slug(match.group(1)), 0
        while (slug if n == 0 else f"{slug}-{n}") in anchors:
            n += 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(anchors)


@lru_cache(maxsize=1)
def _subcommand_options() -> dict[str, frozenset[str]]:
    """Each `lnn-nav` subcommand and its option strings, from the real parser (built, never run)."""
    from lnn_nav.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {name: frozenset(o for a in sp._actions for o in a.option_strings) for name, sp in sub.choices.items()}
    options[""] = frozenset(o for a in parser._actions for o in a.option_strings)  # `lnn-nav --version`
    return options


def _lnn_nav_commands(page: Path) -> list[str]:
    """Every `lnn-nav ...` command the page shows: lines of shell blocks and inline code spans."""
    text = _text(page)
    candidates = [cmd for block in _shell_blocks(text) for cmd in _shell_commands(block)]
    candidates += _inline_spans(text)
    commands = []
    for candidate in candidates:
        match = LNN_NAV.search(candidate)
        if match and match.group(1).strip():
            commands.append("lnn-nav " + match.group(1).strip())
    return commands


def _make_targets(page: Path) -> list[str]:
    text = _text(page)
    code = [cmd for block in _shell_blocks(text) for cmd in _shell_commands(block)] + _inline_spans(text)
    return [m.group(1) for piece in code for m in MAKE.finditer(piece)]


@lru_cache(maxsize=1)
def _makefile_targets() -> frozenset[str]:
    makefile = (REPO / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z_][\w.-]*)\s*:(?!=)", makefile, re.M))


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference into docs/"


def test_readme_links_every_docs_page():
    # The README is the way in: a page nobody links to is a page nobody reads.
    targets = [(m.group(1) or m.group(2)).split("#")[0] for m in LINK.finditer(_text(README))]
    linked = {(README.parent / target).resolve() for target in targets}
    missing = [str(p.relative_to(REPO)) for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md links none of {missing}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_paths_shown_exist(page):
    text = _text(page)
    code = _inline_spans(text) + _shell_blocks(text)
    missing = sorted({path for piece in code for path in _repo_paths(piece) if not _exists(path)})
    assert not missing, f"{page.relative_to(REPO)} shows paths that are not in the tree: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_links_resolve(page):
    bad = []
    for match in LINK.finditer(_prose(_text(page))):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.resolve()):
            bad.append(f"{target} (no heading #{anchor} in {dest.resolve().relative_to(REPO)})")
    assert not bad, f"{page.relative_to(REPO)}: broken links: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_lnn_nav_commands_parse(page):
    options = _subcommand_options()
    bad = []
    for command in _lnn_nav_commands(page):
        rest = _without_quotes(command[len("lnn-nav") :]).split()
        name = rest[0] if rest and not rest[0].startswith("-") else ""
        if name and not re.fullmatch(r"[a-z][a-z-]*", name):
            continue  # `lnn-nav COMMAND --help`: a placeholder, not a command
        if name not in options:
            bad.append(f"{command!r}: no subcommand '{name}'")
            continue
        for flag in FLAG.findall(" ".join(rest[1:] if name else rest)):
            if flag not in options[name]:
                bad.append(f"{command!r}: 'lnn-nav {name}' has no option {flag}")
    assert not bad, f"{page.relative_to(REPO)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_make_targets_exist(page):
    targets = _makefile_targets()
    bad = sorted({t for t in _make_targets(page) if t not in targets and t not in FOREIGN_MAKE_TARGETS})
    assert not bad, f"{page.relative_to(REPO)} shows make targets the Makefile lacks: {bad}"


def test_the_checks_see_what_they_check():
    # Guard against the parsers going blind (a regex that matches nothing passes every test above).
    assert "reproduce" in _makefile_targets() and "demo" in _makefile_targets()
    assert "models/cfc_ncp.safetensors" in _repo_paths("lnn-nav eval --model models/cfc_ncp.safetensors")
    assert _repo_paths("--out sim/worlds/new.sdf $OUT/x/y ~/.cache/a /usr/src/b models/eval/<core>_ood.json") == [
        "models/eval/"
    ]
    assert not _exists("models/policy.safetensors") and _exists("models/{cfc,ltc}.safetensors")
    assert _slug("Gazebo + PX4 SITL (the same worlds)") == "gazebo--px4-sitl-the-same-worlds"
    assert _slug("`lnn-nav` subcommands") == "lnn-nav-subcommands"
    commands = _lnn_nav_commands(README) + _lnn_nav_commands(REPO / "docs" / "training.md")
    assert any(c.startswith("lnn-nav train ") and "--init-encoder" in c for c in commands), commands
    assert "--steer-weight" in _subcommand_options()["train"]
