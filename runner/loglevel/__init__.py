"""Client logging: `logging/setLevel` per handshake-era session, and the deprecation it carries.

Handshake-era clients (2025-11-25 and before) pick a level with `logging/setLevel`;
`notifications/message` below it is not sent. 2026-07-28 removed that request and
deprecated logging (SEP-2577): a client opts in per request with the
`io.modelcontextprotocol/logLevel` `_meta` key, which the SDK itself honours.
"""

from runner.loglevel.session import LevelFilter, quiet_deprecation, send_log, set_level

__all__ = ["LevelFilter", "quiet_deprecation", "send_log", "set_level"]
