"""The prompts of the quality tools, in one place: a question a chunk answers (`switchboard eval generate`, and
the questions of `switchboard export raft`), and the reference answer of a RAFT example."""

from __future__ import annotations

from core.answer.prompt import ChatMessage

NO_QUESTION = "NONE"

QUESTION_SYSTEM = f"""You write evaluation questions for a documentation search engine.
Given one passage of documentation, write ONE question that a real user of the product could ask and that this \
passage answers on its own.
- Ask about the substance (a setting, a command, a behaviour, a number, a reason), the way a user would phrase \
it; use the passage's own terms for the things it names.
- Do not copy sentences from the passage, and do not mention "the passage", "the text" or "the document".
- If the passage answers no useful question (a table of contents, a changelog line, boilerplate), reply {NO_QUESTION}.
Reply with the question alone, on one line."""

RAFT_ANSWER_SYSTEM = """You write reference answers for training an assistant that answers from numbered sources.
Answer the question using only source [1]. First quote the evidence you rely on, copied exactly from the source, \
between ##begin_quote## and ##end_quote##, then reason briefly from it, then give the answer after "<ANSWER>:". \
Cite the source as [1] wherever you use it. If source [1] does not answer the question, reply NONE."""


def question_messages(title: str, text: str) -> list[ChatMessage]:
    return [
        {"role": "system", "content": QUESTION_SYSTEM},
        {"role": "user", "content": f"Passage from “{title}”:\n\n{text.strip()}"},
    ]


def raft_answer_messages(heading: str, text: str, question: str) -> list[ChatMessage]:
    return [
        {"role": "system", "content": RAFT_ANSWER_SYSTEM},
        {"role": "user", "content": f"Sources:\n\n[1] {heading}\n{text.strip()}\n\nQuestion: {question}"},
    ]
