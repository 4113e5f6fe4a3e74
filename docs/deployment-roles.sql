-- PostgreSQL roles for a deployment where the bot and the console are separate services.
-- Run as a superuser after `nazaha init` (migrations) and the console's first start (which
-- creates the schema `console`). The bot's role can use the bot's tables only: it has no
-- privilege at all on the schema `console` (staff accounts, keys, grants, case work, audit).
-- The scaled-deployment work (issue 12) tests these grants.

CREATE ROLE nazaha_bot LOGIN;       -- set a password or use certificate auth
CREATE ROLE nazaha_console LOGIN;

-- The bot: its own tables in the public schema.
GRANT USAGE ON SCHEMA public TO nazaha_bot;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    system_settings, reports, report_fields, processed_updates, user_preferences,
    case_messages, evidence, notification_links, pending_notifications, bot_mailboxes,
    notification_instructions, case_key_epochs
  TO nazaha_bot;
-- Awareness (issue 11): the library sync at start, subscriptions, the broadcast sender, quiz
-- counts, survey answers, campaign opens, staff chat links.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    awareness_topics, awareness_topic_texts, awareness_items, awareness_item_texts,
    subscribers, subscriber_topics, broadcasts, broadcast_versions, broadcast_images,
    broadcast_outbox, broadcast_test_sends, staff_chats, staff_chat_codes,
    staff_chat_confirmations, quiz_polls, surveys, survey_texts, survey_counts, survey_answer_markers, campaigns, campaign_days
  TO nazaha_bot;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO nazaha_bot;
REVOKE ALL ON SCHEMA console FROM nazaha_bot;
REVOKE ALL ON ALL TABLES IN SCHEMA console FROM nazaha_bot;

-- The console: reads reports and their sealed content, writes status, replies and
-- notification instructions; owns its schema.
GRANT USAGE ON SCHEMA public TO nazaha_console;
GRANT SELECT ON system_settings, reports, report_fields, evidence, notification_links,
    bot_mailboxes TO nazaha_console;
GRANT UPDATE (status, outcome) ON reports TO nazaha_console;
-- A team-key rotation (the console's Keys page, `nazaha keys rotate`): re-wraps every report's
-- team wrap, adds case key epochs, re-seals links and publishes the new signed public key.
GRANT UPDATE (wrapped_key_team, team_key_id, key_epoch) ON reports TO nazaha_console;
GRANT SELECT, INSERT ON case_key_epochs TO nazaha_console;
GRANT UPDATE (sealed_link) ON notification_links TO nazaha_console;
GRANT INSERT, UPDATE ON system_settings TO nazaha_console;
GRANT SELECT, INSERT, UPDATE ON case_messages TO nazaha_console;
GRANT SELECT, INSERT, DELETE ON pending_notifications, notification_instructions TO nazaha_console;
GRANT DELETE ON notification_links TO nazaha_console;
-- Awareness: volunteers compose broadcasts, admins approve them and edit the library,
-- surveys and campaigns; the console reads only aggregates and never a subscriber's chat.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    awareness_topics, awareness_topic_texts, awareness_items, awareness_item_texts,
    broadcasts, broadcast_versions, broadcast_images, broadcast_test_sends, surveys,
    survey_texts, campaigns, staff_chat_codes
  TO nazaha_console;
GRANT SELECT, DELETE ON staff_chats, survey_answer_markers TO nazaha_console;
-- Linking a member's chat: the console moves the bot's sealed chat id to staff_chats once the
-- member typed the code the bot sent (it cannot seal a chat id itself: no bot key).
GRANT INSERT, UPDATE ON staff_chats TO nazaha_console;
GRANT SELECT, UPDATE, DELETE ON staff_chat_confirmations TO nazaha_console;
GRANT SELECT ON broadcast_outbox, survey_counts, quiz_polls, campaign_days, subscriber_topics
  TO nazaha_console;
GRANT SELECT (id, language, active) ON subscribers TO nazaha_console;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO nazaha_console;
GRANT ALL ON SCHEMA console TO nazaha_console;
GRANT ALL ON ALL TABLES IN SCHEMA console TO nazaha_console;
GRANT ALL ON ALL SEQUENCES IN SCHEMA console TO nazaha_console;
