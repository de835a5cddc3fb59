"""The documentation: a README a newcomer reads in five minutes, links that resolve, a citation file that parses.

The README's facts live in docs/*.md, benchmarks/README.md and the weights' MODEL_CARD.md; these tests keep the
README short, its first screen useful, and every relative link (and #anchor) between those pages pointing somewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MODEL_CARD = ROOT / "hear_maeast" / "weights" / "MODEL_CARD.md"
PAGES = [README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md", MODEL_CARD, *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of one page whose file, or #anchor, does not exist."""
    bad = []
    for line in prose(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                bad.append(f"{path.relative_to(root)}: {target} (no file {file_part})")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{path.relative_to(root)}: {target} (no heading #{anchor} in {dest.relative_to(root)})")
    return bad


def test_the_readme_is_short_and_its_first_screen_holds_the_commands_the_table_and_the_python():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move the details into docs/"
    first = "\n".join(lines[:80])
    for needle in ("make eval", "make test", "load_model", "get_scene_embeddings", "get_timestamp_embeddings"):
        assert needle in first, f"{needle!r} is not in the first 80 lines of README.md"
    table = [i for i, line in enumerate(lines[:80]) if re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", line)]
    assert table and lines[table[0] - 1].startswith("| model"), "no leaderboard table in the first 80 lines"


def test_the_readme_command_table_names_every_subcommand():
    from hear_maeast.cli import SUBCOMMANDS

    text = README.read_text(encoding="utf-8")
    missing = [name for name in SUBCOMMANDS if f"`hear-maeast {name}" not in text]
    assert not missing, f"README.md's command table lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    assert not broken_links(page), "\n".join(broken_links(page))


def test_the_link_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title `x`: y\n\n[ok](#title-x-y) [gone](b.md) [no anchor](a.md#nope)\n"
                                   "```\n[in code](nowhere.md)\n```\n[web](https://example.org/x)\n")
    bad = broken_links(tmp_path / "a.md", root=tmp_path)
    assert [b.split(": ")[1].split(" ")[0] for b in bad] == ["b.md", "a.md#nope"]


def test_citation_cff_parses_and_cites_the_package_and_both_papers():
    import hear_maeast

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert cff[key], key
    assert str(cff["version"]) == hear_maeast.__version__, "CITATION.cff's version differs from hear_maeast.__version__"
    refs = {r["title"]: r for r in cff["references"]}
    msm = refs["Masked Spectrogram Modeling using Masked Autoencoders for Learning General-purpose Audio Representation"]
    ast = refs["MAE-AST: Masked Autoencoding Audio Spectrogram Transformer"]
    assert msm["authors"][0]["family-names"] == "Niizumi" and msm["year"] == 2022 and msm["volume"] == 166
    assert [a["family-names"] for a in ast["authors"]] == ["Baade", "Peng", "Harwath"] and ast["year"] == 2022
    for ref in (msm, ast):
        assert ref["type"] == "conference-paper"


def test_the_package_metadata_reads_the_readme_and_ships_the_model_card():
    from setuptools.config.setupcfg import read_configuration

    conf = read_configuration(ROOT / "setup.cfg")
    assert conf["metadata"]["long_description"] == README.read_text(encoding="utf-8")
    globs = conf["options"]["package_data"]["hear_maeast"]
    shipped = {p for g in globs for p in (ROOT / "hear_maeast").glob(g)}
    assert MODEL_CARD in shipped and (MODEL_CARD.parent / "CREDITS.md") in shipped


@pytest.mark.parametrize("name", ["docs/pretraining.md", "docs/evaluation.md", "docs/finetuning.md", "docs/reliability.md",
                                  "docs/hear-api.md", "docs/install.md", "benchmarks/README.md",
                                  "hear_maeast/weights/MODEL_CARD.md"])
def test_every_topic_page_starts_with_the_command_it_is_about(name):
    first = (ROOT / name).read_text(encoding="utf-8").splitlines()[0]
    assert re.match(r"^# `[^`]+`", first), f"{name} should open with '# `command`: ...', not {first!r}"
