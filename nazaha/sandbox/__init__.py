"""Nazaha's Telegram Bot API emulator ("sandbox"): used by tests, the demo and `nazaha sandbox`.

Import the pieces from their modules (``nazaha.sandbox.server``, ``.client``, ``.emulator``);
importing this package has no side effects.
"""

# A well-formed, obviously fake token for the demo and the sandbox (never a real bot's).
DEFAULT_SANDBOX_TOKEN = "1000000001:sandbox-demo-token-not-a-secret"

# Control-API keys of the sandbox servers running in this process, by base URL, so that a
# SandboxClient made in the same process (tests, the benchmark) finds its server's key without
# being told. Another process gets the key from the printed chat-page address.
LOCAL_CONTROL_KEYS: dict[str, str] = {}

__all__ = ["DEFAULT_SANDBOX_TOKEN", "LOCAL_CONTROL_KEYS"]
