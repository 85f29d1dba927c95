"""A handbook lookup for the stack tests: answers, errors, raises and garbage on demand."""

from typing import Any

HANDBOOK = {"holidays": "25 days a year", "parking": "Level -2, free"}


def handler(event: dict[str, Any], context: Any) -> Any:
    topic = str(event["input"].get("topic", ""))
    if topic == "explode":
        raise RuntimeError("the handbook is on fire")
    if topic == "garbage":
        return {1, 2, 3}  # not JSON: the bridge must turn it into an error result
    if topic not in HANDBOOK:
        return {"error": f"no entry for {topic!r}"}
    return {"result": {"topic": topic, "answer": HANDBOOK[topic], "by": context.function_name}}
