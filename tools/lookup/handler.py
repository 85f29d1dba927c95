"""lookup: answers from the staff handbook (the documents/ folder), or from an Amazon Bedrock
knowledge base when KNOWLEDGE_BASE_ID is set.

The bundled search is deliberately small: documents are split into sentences and ranked by the
query's words they contain (stems, so "holiday" finds "holidays"). It is enough for a handbook
of a few pages; a knowledge base is the way to go for more.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from novakit.tools.powertools import Call, ToolError, logger, summary, voice_tool

DOCUMENTS = Path(__file__).with_name("documents")
MAX_PASSAGES = 3
# How much of the query an answer repeats back.
MAX_ECHO_CHARS = 80
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "at",
        "be",
        "can",
        "do",
        "does",
        "for",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "the",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
    )
)


def _stem(word: str) -> str:
    # Enough for a handbook: "parking" and "park", "holidays" and "holiday" meet.
    for suffix in ("ing", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


@cache
def _passages() -> list[tuple[str, str, frozenset[str]]]:
    passages = []
    for path in sorted(DOCUMENTS.glob("*.md")):
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        for sentence in re.split(r"(?<=[.!?])\s+", body.replace("\n", " ")):
            if sentence.strip():
                passages.append(
                    (
                        title.lstrip("# ").strip(),
                        sentence.strip(),
                        frozenset(_stems(title + " " + sentence)),
                    )
                )
    return passages


def search_handbook(query: str) -> list[dict[str, str]]:
    wanted = _stems(query)
    scored = [(len(wanted & stems), title, text) for title, text, stems in _passages()]
    best = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])[:MAX_PASSAGES]
    return [{"source": title, "text": text} for _, title, text in best]


def search_knowledge_base(kb_id: str, query: str) -> list[dict[str, str]]:
    import boto3  # in the Lambda runtime; only needed with a knowledge base

    client = boto3.client("bedrock-agent-runtime")
    response = client.retrieve(
        knowledgeBaseId=kb_id,
        retrievalQuery={"text": query},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": MAX_PASSAGES}},
    )
    return [
        {
            "source": str(r.get("location", {}).get("s3Location", {}).get("uri", "knowledge base")),
            "text": r["content"]["text"],
        }
        for r in response.get("retrievalResults", [])
    ]


@voice_tool
def handler(params: dict[str, Any], call: Call) -> dict[str, Any]:
    query = params["query"]
    kb_id = os.environ.get("KNOWLEDGE_BASE_ID", "")
    passages = search_knowledge_base(kb_id, query) if kb_id else search_handbook(query)
    # The query is what the user asked: its size is logged, not its words.
    logger.info("lookup", extra={"query": summary(query), "passages": len(passages)})
    if not passages:
        shown = query if len(query) <= MAX_ECHO_CHARS else query[:MAX_ECHO_CHARS] + "…"
        raise ToolError(f"the handbook says nothing about {shown!r}")
    return {"query": query, "passages": passages}
