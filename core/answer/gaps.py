"""Knowledge gaps: the questions the kit could not answer (or answered badly), grouped by meaning.

Average-linkage agglomerative clustering over cosine similarity, stopped at a threshold: start with one
cluster per distinct question, repeatedly merge the two clusters whose members are, on average, most
similar, and stop when no pair averages at least `threshold`. Average linkage (UPGMA) does not chain
unrelated questions through one in-between question the way single linkage does, and needs no number of
clusters up front. It costs O(n²) memory and, since each merge scans the similarity matrix, O(n³) time, so
callers cap n (a few hundred distinct questions, the most recent): enough to show an operator what is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.vectors import unit_rows

# Measured with all-MiniLM-L6-v2: paraphrases of one question score 0.6-0.8, other questions on the same topic
# (SAML sign-on, Okta SSO) 0.45-0.6, unrelated ones below 0.15.
DEFAULT_THRESHOLD = 0.45
EXAMPLES = 3


@dataclass(frozen=True, kw_only=True)
class Gap:
    """Questions of one meaning: how often they were asked and a few of them, the most frequent first."""

    questions: int  # how many times (counting repeats)
    distinct: int
    examples: tuple[str, ...]


def cluster(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Row indices of `vectors` grouped by average-linkage clustering at a cosine-similarity threshold."""
    n = len(vectors)
    if n == 0:
        return []
    unit = unit_rows(vectors)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)  # a cluster never merges with itself
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    alive = np.ones(n, dtype=bool)
    while True:
        best = int(np.argmax(sim))
        i, j = divmod(best, n)
        if sim[i, j] < threshold:
            break
        # Lance-Williams update for average linkage: the merged cluster's mean similarity to every other one.
        merged = (sizes[i] * sim[i] + sizes[j] * sim[j]) / (sizes[i] + sizes[j])
        sim[i], sim[:, i] = merged, merged
        sim[i, i] = -np.inf
        sim[j], sim[:, j] = -np.inf, -np.inf
        sizes[i] += sizes[j]
        members[i] += members[j]
        alive[j] = False
    return [members[i] for i in range(n) if alive[i]]


def knowledge_gaps(
    questions: Sequence[str],
    embed: Callable[[list[str]], list[list[float]]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    limit: int = 20,
) -> list[Gap]:
    """Group questions (repeats allowed) by meaning; the largest groups first, at most `limit`.

    Questions differing only in case and spacing count as one before embedding."""
    counts = Counter(" ".join(q.split()).lower() for q in questions if q.strip())
    shown: dict[str, str] = {}
    for q in questions:  # show each distinct question as someone wrote it
        shown.setdefault(" ".join(q.split()).lower(), " ".join(q.split()))
    distinct = list(counts)
    if not distinct:
        return []
    groups = cluster(np.asarray(embed([shown[k] for k in distinct]), dtype=np.float32), threshold)
    gaps = []
    for group in groups:
        keys = sorted((distinct[i] for i in group), key=lambda k: (-counts[k], k))
        gaps.append(
            Gap(
                questions=sum(counts[k] for k in keys),
                distinct=len(keys),
                examples=tuple(shown[k] for k in keys[:EXAMPLES]),
            )
        )
    gaps.sort(key=lambda g: (-g.questions, -g.distinct, g.examples))
    return gaps[:limit]
