"""The prompt a row asks and the chat turns a stage teaches, for training and evaluation alike.

Evaluation asks the same question training taught (``prompt_text``), so a score measures the
trained behaviour, not a change of wording. ``formatted_messages`` puts each exchange in a stage's
reply format (``medmo_pipeline.reply_format``).
"""

from __future__ import annotations

from medmo_pipeline.reply_format import ReplyFormat, sft_turns


def prompt_text(row: dict) -> str:
    """The row's question: its first (user) turn."""
    return row["messages"][0]["content"]


def formatted_messages(messages: list[dict], reply_format: ReplyFormat, ask: bool = True) -> list[dict]:
    """Chat turns with every (user, assistant) exchange in ``reply_format`` (``ask``: see ``sft_turns``)."""
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    for index, message in enumerate(out):
        if message["role"] == "assistant" and index and out[index - 1]["role"] == "user":
            out[index - 1]["content"], message["content"] = sft_turns(
                out[index - 1]["content"], message["content"], reply_format, ask)
    return out
