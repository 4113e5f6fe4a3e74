"""Localized labels for the flows' codes (choices, fields, questions).

Everything here is a lazy gettext string: it is translated when rendered, in the locale of
the user being answered.
"""

from __future__ import annotations

from aiogram.utils.i18n import lazy_gettext as __

CHOICE_LABELS = {
    "category": {
        "public_funds": __("Misuse of public funds or the budget"),
        "procurement": __("Public procurement and tenders"),
        "bribery": __("Bribery"),
        "nepotism": __("Nepotism, favouritism (wasta) and appointments to public posts"),
        "conflict_of_interest": __("Conflict of interest"),
        "abuse_of_office": __("Abuse of office or power"),
        "local_council": __("Local council services"),
        "justice_security": __("Justice, security or law-enforcement bodies"),
        "social_services": __("Health, education or social-protection services"),
        "other": __("Other"),
    },
    "sector": {
        "ministry": __("Ministry or central agency"),
        "local_council": __("Local council or municipality"),
        "security": __("Security services"),
        "judiciary": __("Judiciary or prosecution"),
        "public_enterprise": __("Public enterprise or utility"),
        "ngo_union_party": __("NGO, union or party"),
        "private_company": __("Private company"),
        "other": __("Other or unknown"),
    },
    "service": {
        "health": __("Health"),
        "education": __("Education"),
        "water_electricity": __("Water and electricity"),
        "municipal": __("Municipal services"),
        "social_protection": __("Social protection"),
        "documents_permits": __("Documents and permits"),
        "other": __("Other"),
    },
    "governorate": {
        "jenin": __("Jenin"),
        "tubas": __("Tubas"),
        "tulkarm": __("Tulkarm"),
        "nablus": __("Nablus"),
        "qalqilya": __("Qalqilya"),
        "salfit": __("Salfit"),
        "ramallah": __("Ramallah and Al-Bireh"),
        "jericho": __("Jericho and Al-Aghwar"),
        "jerusalem": __("Jerusalem"),
        "bethlehem": __("Bethlehem"),
        "hebron": __("Hebron"),
        "north_gaza": __("North Gaza"),
        "gaza": __("Gaza"),
        "deir_al_balah": __("Deir al-Balah"),
        "khan_yunis": __("Khan Yunis"),
        "rafah": __("Rafah"),
        "undisclosed": __("Prefer not to say"),
    },
    "when": {
        "ongoing": __("It is still going on"),
        "last_month": __("Within the last month"),
        "last_year": __("Within the last year"),
        "earlier": __("Earlier than that"),
    },
    "contact": {
        "anonymous": __("Stay anonymous: I will follow up with my receipt"),
        "share": __("Share my contact details in confidence with the caseworkers"),
    },
    "notify": {
        "none": __("No notifications (safest)"),
        "chat": __("Notify me in this chat, without any details"),
    },
    "consent": {
        "agree": __("I agree: share my name and phone with the caseworkers"),
        "decline": __("No, keep me anonymous"),
    },
}

FIELD_LABELS = {
    "category": __("Category"),
    "sector": __("Institution"),
    "service": __("Service"),
    "governorate": __("Governorate"),
    "when": __("When"),
    "description": __("Description"),
    "evidence": __("Evidence"),
    "notify": __("Notifications"),
    "contact": __("Contact"),
    "contact_name": __("Name"),
    "contact_phone": __("Phone"),
}

# What each evidence kind (nazaha.flows.evidence_kinds) is called on the review screen.
EVIDENCE_KIND_LABELS = {
    "photo": __("Photo"),
    "document": __("Document"),
    "voice": __("Voice note"),
    "audio": __("Audio"),
    "video": __("Video"),
    "video_note": __("Video message"),
    "animation": __("Animation"),
}

QUESTIONS = {
    "category": __("What kind of corruption is it? Choose the closest category."),
    "sector": __("Which kind of institution is involved?"),
    "service": __("Which public service is your complaint about?"),
    "governorate": __(
        "In which governorate did it happen? You may choose \"Prefer not to say\"."
    ),
    "when": __("When did it happen?"),
    "description": __(
        "Describe what happened: who did what, where and when, and how you know. "
        "Do not write your own name. You can send several messages; tap Done when "
        "you have finished."
    ),
    "evidence": __(
        "Do you have evidence? Send photos, documents, voice notes, audio or video, "
        "one or several, then tap Done. If not, tap Done to skip.\n\n"
        "Files are encrypted as soon as they arrive. Photos sent as files and documents "
        "can carry the author's name, the device or the place: we keep a cleaned copy "
        "of images for the caseworkers."
    ),
    "notify": __(
        "Would you like a short notification in this chat when there is an update on "
        "your report? It says only that there is an update, never what it is. Anyone "
        "who can see your phone would see it: choose no notifications if that is a risk. "
        "Erasing this conversation with /wipe does not stop future notifications: to "
        "stop them, choose Follow up, enter your receipt and tap \"Stop notifications\"."
    ),
    "contact": __(
        "How would you like to stay in touch? Staying anonymous is the safest choice: "
        "you follow up with your receipt."
    ),
    "consent": __(
        "If you share your name and phone number, they are encrypted and only the "
        "coalition's caseworkers can read them. They may use them to call you. Anyone "
        "who later sees them learns that you reported. Do you agree to share them?"
    ),
    "contact_name": __("Please write the name the caseworkers should use."),
    "contact_phone": __(
        "Please write a phone number the caseworkers can call, or tap Skip."
    ),
}

# The notification question, for a complaint.
NOTIFY_QUESTION_COMPLAINT = __(
    "Would you like a short notification in this chat when there is an update on your "
    "complaint? It says only that there is an update, never what it is. Anyone who can see "
    "your phone would see it: choose no notifications if that is a risk. Erasing this "
    "conversation with /wipe does not stop future notifications: to stop them, choose "
    "Follow up, enter your receipt and tap \"Stop notifications\"."
)
