"""Linking a staff member's Telegram chat needs a code typed back in the console (issue 11 trial).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
