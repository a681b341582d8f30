"""What a fetched page tells a crawler about itself: its canonical URL, the links to follow, and its robots
directives (`<meta name="robots">` and the X-Robots-Tag header: noindex → not ingested, nofollow → its links
not followed, none → both). Links marked rel=nofollow are not followed either: sites put it on login, edit and
"print this page" links, which are not documentation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

# A page naming no robots directive costs no HTML parse on a sitemap read (a crawl parses every page anyway).
_MENTIONS_ROBOTS = re.compile(rb"(?i)robots")


@dataclass(frozen=True)
class Robots:
    noindex: bool = False
    nofollow: bool = False

    def __or__(self, other: Robots) -> Robots:
        return Robots(self.noindex or other.noindex, self.nofollow or other.nofollow)

    @classmethod
    def of(cls, content: str) -> Robots:
        """From a directive list like "noindex, follow" (unknown directives such as max-snippet are ignored)."""
        words = {w.strip().lower() for w in content.split(",")}
        none = "none" in words
        return cls(noindex=none or "noindex" in words, nofollow=none or "nofollow" in words)


@dataclass(frozen=True)
class PageMeta:
    canonical: str | None = None
    links: tuple[str, ...] = ()
    robots: Robots = Robots()


def agent_token(user_agent: str) -> str:
    """The product token robots rules name a crawler by: "SwitchboardBot" of "SwitchboardBot/0.1 (+…)"."""
    return user_agent.split("/")[0].split()[0].lower() if user_agent.strip() else ""


def _for_us(name: str, agent: str) -> bool:
    return name in ("robots", agent)


def header_robots(values: Iterable[str], agent: str) -> Robots:
    """X-Robots-Tag header values: "noindex, nofollow" applies to every crawler, "googlebot: noindex" only to
    the one named (a token before a colon that is not a directive with a value, like unavailable_after)."""
    robots = Robots()
    for value in values:
        name, sep, rest = value.partition(":")
        named = sep and " " not in name.strip() and "," not in name and name.strip().lower() != "unavailable_after"
        if not named:
            robots |= Robots.of(value)
        elif _for_us(name.strip().lower(), agent):
            robots |= Robots.of(rest)
    return robots


def html_meta(data: bytes, url: str, agent: str, *, links: bool) -> PageMeta:
    """An HTML page's canonical URL, its absolute http(s) links (when `links`; none when it says nofollow) and
    its meta robots directives, parsed with the parser extraction uses."""
    if not links and not _MENTIONS_ROBOTS.search(data):
        return PageMeta()
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "lxml")
    robots = Robots()
    for meta in soup.find_all("meta", attrs={"name": True, "content": True}):
        if _for_us(str(meta["name"]).strip().lower(), agent):
            robots |= Robots.of(str(meta["content"]))
    if not links:
        return PageMeta(robots=robots)
    base = soup.find("base", href=True)
    base_url = urljoin(url, str(base["href"])) if base is not None else url
    canonical = None
    for link in soup.find_all("link", href=True):
        if "canonical" in (link.get("rel") or []):
            canonical = urljoin(base_url, str(link["href"])).split("#")[0]
            break
    if robots.nofollow:
        return PageMeta(canonical, (), robots)
    found = (
        urljoin(base_url, str(a["href"])).split("#")[0]
        for a in soup.find_all("a", href=True)
        if "nofollow" not in (a.get("rel") or [])
    )
    return PageMeta(canonical, tuple(dict.fromkeys(u for u in found if u.startswith(("http://", "https://")))), robots)
