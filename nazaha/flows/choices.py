"""The closed lists a reporter chooses from.

Codes are short ASCII words: they travel in callback data (64 bytes at most) and are
stored as plain triage metadata. Their Arabic and English labels live with the
presentation code (``nazaha.handlers.labels``), not here: flows know no language.
"""

from __future__ import annotations

# Categories from the coalition's strategy.
CATEGORIES: tuple[str, ...] = (
    "public_funds",
    "procurement",
    "bribery",
    "nepotism",
    "conflict_of_interest",
    "abuse_of_office",
    "local_council",
    "justice_security",
    "social_services",
    "other",
)

SECTORS: tuple[str, ...] = (
    "ministry",
    "local_council",
    "security",
    "judiciary",
    "public_enterprise",
    "ngo_union_party",
    "private_company",
    "other",
)

# The 16 Palestinian governorates (West Bank, then Gaza Strip) and "prefer not to say".
GOVERNORATES: tuple[str, ...] = (
    "jenin",
    "tubas",
    "tulkarm",
    "nablus",
    "qalqilya",
    "salfit",
    "ramallah",
    "jericho",
    "jerusalem",
    "bethlehem",
    "hebron",
    "north_gaza",
    "gaza",
    "deir_al_balah",
    "khan_yunis",
    "rafah",
    "undisclosed",
)

WHEN: tuple[str, ...] = ("ongoing", "last_month", "last_year", "earlier")

SERVICES: tuple[str, ...] = (
    "health",
    "education",
    "water_electricity",
    "municipal",
    "social_protection",
    "documents_permits",
    "other",
)

CONTACT: tuple[str, ...] = ("anonymous", "share")
CONSENT: tuple[str, ...] = ("agree", "decline")

# Opt-in, content-free notifications in this chat when the case changes.
NOTIFY: tuple[str, ...] = ("none", "chat")
