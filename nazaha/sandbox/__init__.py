"""Nazaha's Telegram Bot API emulator ("sandbox"): used by tests, the demo and `nazaha sandbox`.

Import the pieces from their modules (``nazaha.sandbox.server``, ``.client``, ``.emulator``);
importing this package has no side effects.
"""

# A well-formed, obviously fake token for the demo and the sandbox (never a real bot's).
DEFAULT_SANDBOX_TOKEN = "1000000001:sandbox-demo-token-not-a-secret"

__all__ = ["DEFAULT_SANDBOX_TOKEN"]
