from itertools import pairwise

from core.ingest.chunk import chunk_markdown

PROSE = "This sentence talks about retries and queues. " * 40


def test_headings_start_chunks_and_name_sections() -> None:
    md = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### Docker\n\nUse compose.\n\n## Usage\n\nCall it.\n"
    pieces = chunk_markdown(md, size=1000, overlap=100)
    assert [p.section for p in pieces] == ["Guide", "Guide › Install", "Guide › Install › Docker", "Guide › Usage"]
    assert pieces[1].text == "## Install\n\nRun it."


def test_sections_are_named_by_the_headings_words_without_their_links_or_anchors() -> None:
    # What a Sphinx page becomes through the HTML extractor: every heading ends in a permalink.
    md = (
        '# 5. Managing Packages[¶](#managing-packages "Permalink to this heading")\n\nIntro.\n\n'
        '## The `debian/rules` file[¶](#rules "Permalink")\n\nRun it.\n\n## See [the FAQ](faq.html)\n\nAsk.\n'
    )
    pieces = chunk_markdown(md, size=1000, overlap=100)
    assert [p.section for p in pieces] == [
        "5. Managing Packages",
        "5. Managing Packages › The debian/rules file",
        "5. Managing Packages › See the FAQ",
    ]
    assert pieces[1].text.startswith("## The `debian/rules` file[¶]")  # the passage itself is kept as written
    anchor_only = chunk_markdown("# Guide\n\n## [¶](#x)\n\n### Run\n\nGo.\n", size=1000, overlap=100)
    assert [p.section for p in anchor_only] == ["Guide › Run"]


def test_heading_directly_under_heading_is_not_a_chunk_of_its_own() -> None:
    pieces = chunk_markdown("# Title\n\n## First\n\nBody text.\n", size=1000, overlap=0)
    assert len(pieces) == 1
    assert pieces[0].text.startswith("# Title\n\n## First")
    assert pieces[0].section == "Title › First"


def test_heading_followed_by_a_long_block_is_not_a_chunk_of_its_own() -> None:
    pieces = chunk_markdown("# T\n\n## Long\n\n" + PROSE, size=400, overlap=0)
    assert pieces[0].text.startswith("# T\n\n## Long\n\nThis sentence")
    assert all(len(p.text) <= 400 + len("# T\n\n## Long\n\n") for p in pieces)


def test_size_limit_and_overlap_for_long_prose() -> None:
    pieces = chunk_markdown("# T\n\n" + PROSE, size=400, overlap=80)
    assert len(pieces) > 3
    assert all(len(p.text) <= 400 for p in pieces)
    for before, after in pairwise(pieces):
        # the next chunk starts with the tail of the previous one
        assert before.text[-40:] in after.text


def test_code_block_is_never_cut_when_it_fits() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(30)) + "\n```"
    md = "# T\n\n" + "Some prose. " * 50 + "\n\n" + code + "\n\nAfter.\n"
    pieces = chunk_markdown(md, size=600, overlap=50)
    holding = [p for p in pieces if "x0 = 0" in p.text]
    assert len(holding) == 1 and "x29 = 29" in holding[0].text


def test_heading_like_line_inside_code_is_not_a_heading() -> None:
    md = "# T\n\n```bash\n# install\npip install x\n```\n"
    pieces = chunk_markdown(md, size=1000, overlap=0)
    assert [p.section for p in pieces] == ["T"]


def test_oversized_code_block_is_split_into_fenced_parts() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(200)) + "\n```"
    pieces = chunk_markdown(code, size=500, overlap=50)
    assert len(pieces) > 5
    for p in pieces:
        assert p.text.startswith("```python\n") and p.text.endswith("\n```")
        assert len(p.text) <= 500
    joined = "\n".join(p.text for p in pieces)
    assert all(f"value_{i} = compute({i})" in joined for i in range(200))


def test_empty_document_has_no_chunks() -> None:
    assert chunk_markdown("   \n\n", size=500, overlap=50) == []


def test_short_sections_merge_until_the_chunk_is_long_enough() -> None:
    md = "# Guide\n\nIntro.\n\n## A\n\nShort a.\n\n## B\n\n" + "Long b. " * 40 + "\n\n## C\n\nShort c.\n"
    split = chunk_markdown(md, size=1000, overlap=0)
    assert [p.section for p in split] == ["Guide", "Guide › A", "Guide › B", "Guide › C"]
    merged = chunk_markdown(md, size=1000, overlap=0, merge_below=100)
    # Guide, A and B gather into one chunk named after where it starts; past 100 characters C starts its own.
    assert [p.section for p in merged] == ["Guide", "Guide › C"]
    assert merged[0].text.startswith("# Guide\n\nIntro.\n\n## A\n\nShort a.\n\n## B")
    # The size limit still rules: a merge never grows a chunk past it.
    assert all(len(p.text) <= 1000 for p in chunk_markdown(md * 3, size=400, overlap=0, merge_below=300))
