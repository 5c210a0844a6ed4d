"""Local fakes of Slack for tests: the Web API (``FakeSlack``) and Socket Mode (``FakeSocketMode``).

Both are driven by the real slack-sdk clients; see each module's docstring for how to point them.
"""

from .socket import APP_ID, FakeSocketMode
from .web import (
    BOT_USER_ID,
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_TOKEN,
    MAX_BLOCKS,
    MAX_BLOCKS_TEXT,
    MAX_MESSAGE_TEXT,
    MAX_SECTION_TEXT,
    TEAM_ID,
    Call,
    FakeSlack,
    Message,
    UploadedFile,
    block_errors,
    blocks_text_length,
)

__all__ = [
    "APP_ID",
    "BOT_USER_ID",
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_TOKEN",
    "MAX_BLOCKS",
    "MAX_BLOCKS_TEXT",
    "MAX_MESSAGE_TEXT",
    "MAX_SECTION_TEXT",
    "TEAM_ID",
    "Call",
    "FakeSlack",
    "FakeSocketMode",
    "Message",
    "UploadedFile",
    "block_errors",
    "blocks_text_length",
]
