"""Text for Slack: its limits, mrkdwn made inert, sizes as Slack counts them, and the block builders.

Every user- or plan-derived string goes through `escape_mrkdwn` (or `code`, `escaped`, `plain`);
sizes are counted in UTF-16 code units (`text_size`) and every cut ends in "…". The limits are
described in `tfops.notify.blocks`, which holds them for every message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

SECTION_TEXT = 3000
CONTEXT_TEXT = 3000
HEADER_TEXT = 150
CONFIRM_TEXT = 300  # the confirm dialog's text (plain_text); its title 100, its buttons 30
MAX_BLOCKS = 50
MAX_TOTAL_TEXT = 12000
FALLBACK_TEXT = 3000
THREAD_NOTE_TEXT = 3000
# A stack name, wherever a message shows it (header, confirm dialog, fallback text, file name).
STACK_CHARS = 60

_GROUP_MENTION = re.compile(r"<!subteam\^(S[A-Z0-9]{1,30})>|(S[A-Z0-9]{1,30})")
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]{1,30})>|([UW][A-Z0-9]{1,30})")
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"
# Invisible characters that reorder text: shown escaped so a name cannot look like another one.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MRKDWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PLAIN_LOOKALIKES = str.maketrans({"&": "＆", "<": "‹", ">": "›"})
_ELLIPSIS = "…"


def format_mention(mention: str) -> str:
    """`<!subteam^S…>` or `<@U…>` from a user group id, a user id, or either already formatted.

    Raises ValueError for anything else: a mention is configuration, and a wrong one should be
    found when the config is checked, not rendered as text nobody is paged by.
    """
    if isinstance(mention, str):
        if match := _GROUP_MENTION.fullmatch(mention):
            return f"<!subteam^{match.group(1) or match.group(2)}>"
        if match := _USER_MENTION.fullmatch(mention):
            return f"<@{match.group(1) or match.group(2)}>"
    raise ValueError("a mention is a Slack user group id (S…) or user id (U…/W…)")


# --- escaping and sizes -------------------------------------------------------------------------------


def text_size(text: str) -> int:
    """Size in UTF-16 code units: what a JavaScript-based limit counts, and never less than len()."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def escape_mrkdwn(text: str, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """`text` made inert for Slack mrkdwn, at most `limit` long (ending in … when cut)."""
    return clip(inert_pieces(text, keep_newlines=keep_newlines), limit)[0]


def inert_pieces(text: str, *, keep_newlines: bool = False) -> list[str]:
    """One piece per character, so clipping never splits an entity or an escape."""
    text = _BROADCAST.sub("@" + _WORD_JOINER, str(text))
    return [_inert_char(char, keep_newlines) for char in text]


def _inert_char(char: str, keep_newlines: bool) -> str:
    if char in _MRKDWN_ENTITIES:
        return _MRKDWN_ENTITIES[char]
    if keep_newlines and char in "\n\t":
        return char
    point = ord(char)
    if point < 0x20 or 0x7F <= point < 0xA0 or char in "\u2028\u2029" or char in _BIDI_CONTROLS:
        return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"
    return char


def clip(pieces: Sequence[str], limit: int | None) -> tuple[str, bool]:
    """Join pieces, keeping the size within limit; (text, whether anything was cut)."""
    sizes = [text_size(piece) for piece in pieces]
    if limit is None or sum(sizes) <= limit:
        return "".join(pieces), False
    kept, used = [], 0
    for piece, size in zip(pieces, sizes, strict=True):
        if used + size > limit - 1:
            break
        kept.append(piece)
        used += size
    return "".join(kept) + _ELLIPSIS, True


def clip_start(pieces: Sequence[str], limit: int) -> tuple[str, bool]:
    """Like clip, but keep the end: the tail of an error is the part that explains it."""
    sizes = [text_size(piece) for piece in pieces]
    if sum(sizes) <= limit:
        return "".join(pieces), False
    kept_from, used = len(pieces), text_size(_ELLIPSIS)
    while kept_from > 0 and used + sizes[kept_from - 1] <= limit:
        kept_from -= 1
        used += sizes[kept_from]
    return _ELLIPSIS + "".join(pieces[kept_from:]), True


def escaped(text: str, limit: int) -> tuple[str, bool]:
    return clip(inert_pieces(text), limit)


def code(text: str, limit: int) -> tuple[str, bool]:
    """Inline code: a backtick inside would end the span, so it becomes a look-alike."""
    inner, cut = clip(inert_pieces(str(text).replace("`", "ˋ")), limit - 2)
    return f"`{inner or ' '}`", cut


def plain(text: str, limit: int) -> str:
    """For plain_text objects, which Slack does not parse: no entities, but no angle brackets either."""
    return clip(inert_pieces(str(text).translate(_PLAIN_LOOKALIKES)), limit)[0]


# --- blocks -----------------------------------------------------------------------------------------


def header_block(text: str) -> dict[str, Any]:
    text = clip([text], HEADER_TEXT)[0]
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def section_block(lines: Iterable[str]) -> dict[str, Any]:
    text = clip(["\n".join(lines)], SECTION_TEXT)[0]
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context_block(*texts: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": clip([text], CONTEXT_TEXT)[0]} for text in texts if text]
    return {"type": "context", "elements": elements}


def plain_text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def block_text_size(blocks: Iterable[dict[str, Any]]) -> int:
    """The sum of every text field in `blocks`: what MAX_TOTAL_TEXT bounds."""
    return sum(text_size(text) for text in _texts(list(blocks)))


def _texts(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)
