from core.ingest.pipeline import embedding_text
from core.ingest.plain import plain_inline, plain_text
from core.kb import EMBED_TEXT, LEGACY_EMBED_TEXT, MARKDOWN_EMBED_TEXT

PASSAGE = """## Packages[¶](#packages "Permalink to this heading")

Read the *Debian* [policy manual](https://www.debian.org/doc/debian-policy/ "Policy") and <https://wiki.debian.org>,
or mail <debian-user@lists.debian.org>. ![The logo](logo.png) See [https://x.example](https://x.example),
~~not~~ issue [#](https://bugs.example/1).

<details><summary>More <b>help</b></summary><!-- a note to editors --></details>

| Package | Popcon | Size |
|---|---|---|
| [aptitude](https://tracker.debian.org/aptitude) | [I:2](http://qa.debian.org/popcon.php?p=aptitude) | 4 |

```sh
apt-get install [foo](bar) **not emphasis**
```

- one **item**
> quoted `code`
"""


def test_plain_text_keeps_the_words_a_reader_sees_and_drops_link_targets_and_marks() -> None:
    assert plain_text(PASSAGE).splitlines() == [
        "Packages",
        "Read the Debian policy manual and ,",  # a URL written out is not words
        "or mail debian-user@lists.debian.org. The logo See ,",
        "not issue #.",  # only a heading's anchor glyph goes
        "More help",
        "Package Popcon Size",
        "aptitude I:2 4",
        "apt-get install [foo](bar) **not emphasis**",  # code as written
        "one item",
        "quoted code",
    ]


def test_plain_inline_drops_heading_anchors_of_every_common_generator() -> None:
    for anchor in (
        "[¶](#a)",
        '[¶](#a "Permalink to this headline")',
        "[#](#a)",
        "[§](#a)",
        "[🔗](#a)",
        "[¶](p.html#a)",
    ):
        assert plain_inline(f"Install `sb` on **Linux**{anchor}") == "Install sb on Linux"
    assert plain_inline("Plain words") == "Plain words"


def test_each_kb_embeds_chunks_the_way_it_was_built() -> None:
    text = "See [the guide](https://x.example/guide) for *details*."
    assert embedding_text("Title", "Setup", text, EMBED_TEXT) == "Setup\nSee the guide for details."
    assert embedding_text("Title", "Setup", text, MARKDOWN_EMBED_TEXT) == f"Setup\n{text}"
    assert embedding_text("Title", "Setup", text, LEGACY_EMBED_TEXT) == f"Title\nSetup\n{text}"
    assert embedding_text("Title", "", text, EMBED_TEXT) == "See the guide for details."
    # Nothing but a link's target: embedded as written, never as an empty text (OpenAI refuses those).
    assert embedding_text("Title", "", "<https://x.example/a>", EMBED_TEXT) == "<https://x.example/a>"
