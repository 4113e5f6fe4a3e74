// Nazaha sandbox chat page. Message content is untrusted: it is only ever set with textContent.
"use strict";

(function () {
  const API = "/sandbox/api";
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  // The sandbox user of this page, kept in localStorage so that a reload, another tab or a
  // browser restart continues the same chat while the same sandbox run lasts (the run id
  // tells a restarted sandbox, which forgot its users, from the same one).
  const storeKey = "nazaha-sandbox:" + (token ? token.split(":")[0] : "default");
  let runId = null;
  const controlKey = readControlKey();
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const bubbles = new Map(); // message_id -> {el, sig}
  let userId = null;
  let version = -1;
  let pollGen = 0;
  let hiddenReplyKeyboardOf = null; // message id whose one-time reply keyboard was used

  // The page's own words, in the language chosen for the chat (bot messages come from the bot).
  const STRINGS = {
    ar: {
      title: "نزاهة · بيئة تجريبية", hint: "محاكي تيليجرام · ليس تيليجرام الحقيقي", language: "اللغة",
      newChat: "محادثة جديدة", newChatTitle: "ابدأ من جديد كمستخدم جديد", sticker: "ملصق",
      stickerTitle: "أرسل ملصقًا", location: "موقع", locationTitle: "أرسل موقعًا", photo: "صورة",
      photoTitle: "أرسل صورة صغيرة مولَّدة", voice: "رسالة صوتية", voiceTitle: "أرسل رسالة صوتية",
      file: "ملف…", send: "إرسال", placeholder: "اكتب رسالة…",
      empty: "اضغط \u2066/start\u2069 لبدء الحديث مع البوت", protected: "محميّة",
      protectedTitle: "لا يمكن إعادة توجيهها أو حفظها", edited: "معدَّلة",
      noKey: "افتح العنوان الذي طبعه \u2066make demo\u2069 كاملًا، فهو يحمل مفتاح هذا التشغيل.",
      media: { photo: "📷 صورة", document: "📄 مستند", voice: "🎤 رسالة صوتية", sticker: "ملصق",
               location: "📍 موقع", contact: "👤 جهة اتصال" },
      poll: "📊 استطلاع", anonymousPoll: "📊 استطلاع مجهول الهوية", quiz: "🧠 اختبار",
      anonymousQuiz: "🧠 اختبار مجهول الهوية", closedPoll: "النتائج النهائية", vote: "صوِّت",
      retract: "سحب التصويت", explanation: "💡 ",
      voters: { zero: "لا أصوات بعد", one: "صوت واحد", two: "صوتان", few: "{n} أصوات",
                many: "{n} صوتًا", other: "{n} صوت" },
      right: "إجابة صحيحة", wrong: "إجابة خاطئة",
    },
    en: {
      title: "Nazaha sandbox", hint: "Telegram emulator · not real Telegram", language: "Language",
      newChat: "New chat", newChatTitle: "Start over as a new user", sticker: "Sticker",
      stickerTitle: "Send a sticker", location: "Location", locationTitle: "Send a location", photo: "Photo",
      photoTitle: "Send a small generated photo", voice: "Voice", voiceTitle: "Send a voice note",
      file: "File…", send: "Send", placeholder: "Write a message…",
      empty: "Press /start to talk to the bot", protected: "protected",
      protectedTitle: "protect_content: cannot be forwarded or saved", edited: "edited",
      noKey: "Open the whole address printed by `make demo`: it carries this run's key.",
      media: { photo: "📷 photo", document: "📄 document", voice: "🎤 voice message", sticker: "sticker",
               location: "📍 location", contact: "👤 contact" },
      poll: "📊 Poll", anonymousPoll: "📊 Anonymous poll", quiz: "🧠 Quiz", anonymousQuiz: "🧠 Anonymous quiz",
      closedPoll: "Final results", vote: "Vote", retract: "Retract vote", explanation: "💡 ",
      voters: { zero: "No votes yet", one: "{n} vote", other: "{n} votes" },
      right: "right answer", wrong: "wrong answer",
    },
  };
  let lang = "ar";
  const t = (name) => (STRINGS[lang] || STRINGS.en)[name];

  // The control API's per-run key comes in the address fragment (#key=...), which the browser
  // never sends to a server; it is kept for this tab only and removed from the address bar.
  function readControlKey() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
    if (fromHash) {
      sessionStorage.setItem("nazaha-sandbox-key", fromHash);
      history.replaceState(null, "", location.pathname + location.search);
      return fromHash;
    }
    return sessionStorage.getItem("nazaha-sandbox-key") || "";
  }

  function withToken(path) {
    if (!token) return API + path;
    return API + path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  async function call(method, path, body) {
    const init = { method, headers: { "X-Sandbox-Key": controlKey } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(withToken(path), init);
    if (resp.status === 401) toast(t("noKey"));
    const data = await resp.json().catch(() => ({}));
    return { status: resp.status, data };
  }

  function toast(text, alertLike) {
    if (alertLike) { window.alert(text); return; }
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 3000);
  }

  function setLanguage(chosen) {
    lang = STRINGS[chosen] ? chosen : "en";
    document.documentElement.lang = lang;
    document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
    $("lang").value = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    document.title = t("title");
    const hint = log.querySelector(".empty");
    if (hint) hint.replaceChildren(isolated(t("empty")));
  }

  async function newUser() {
    const { status, data } = await call("POST", "/users", {
      first_name: lang === "ar" ? "مستخدم تجريبي" : "Sandbox user", language_code: lang,
    });
    if (status !== 200) throw new Error("could not create a sandbox user");
    userId = data.id;
    document.documentElement.dataset.sandboxUser = String(userId);
    saveUser();
    resetLog();
    startPolling();
  }

  function resetLog() {
    bubbles.clear();
    log.replaceChildren();
    version = -1;
    hiddenReplyKeyboardOf = null;
    renderReplyKeyboard([]);
  }

  function mediaText(m) {
    const media = m.media || {};
    if (m.kind === "sticker" && media.sticker) return (media.sticker.emoji || "") + " " + t("media").sticker;
    if (m.kind === "location" && media.location) {
      return "📍 " + media.location.latitude.toFixed(4) + ", " + media.location.longitude.toFixed(4);
    }
    if (m.kind === "document" && media.document) {
      // A file name is a left-to-right run: isolated so "إيصال-الدفع.pdf" keeps its order.
      return "📄 \u2066" + (media.document.file_name || t("media").document) + "\u2069";
    }
    return t("media")[m.kind] || m.kind;
  }

  // The page's own strings isolate left-to-right runs (commands, numbers) with U+2066..U+2069;
  // drawn as <bdi dir="ltr"> elements instead, which every browser isolates ("/start", never
  // "start/", inside Arabic).
  function isolated(text) {
    const fragment = document.createDocumentFragment();
    const parts = text.split(/\u2066([^\u2069]*)\u2069/);
    parts.forEach((part, i) => {
      if (i % 2 === 0) { if (part) fragment.appendChild(document.createTextNode(part)); return; }
      const run = document.createElement("bdi");
      run.dir = "ltr";
      run.textContent = part;
      fragment.appendChild(run);
    });
    return fragment;
  }

  // Text with Telegram entities (offsets in UTF-16 code units, as JavaScript strings count)
  // as DOM nodes. The text itself only ever goes into text nodes; links are made only for
  // http(s) and mailto addresses, and open in a new tab without a referrer.
  const ENTITY_TAGS = {
    bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre",
    blockquote: "blockquote", expandable_blockquote: "blockquote",
  };

  function link(href) {
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function entityElement(entity, covered) {
    let href = null;
    if (entity.type === "url") href = safeUrl(/^[a-z][a-z0-9+.-]*:/i.test(covered) ? covered : "http://" + covered);
    else if (entity.type === "text_link" && typeof entity.url === "string") href = safeUrl(entity.url);
    else if (entity.type === "email") href = "mailto:" + encodeURIComponent(covered).replace("%40", "@");
    if (href) return link(href);
    const el = document.createElement(ENTITY_TAGS[entity.type] || "span");
    el.className = "entity entity-" + String(entity.type).replace(/[^a-z_]/g, "");
    if (entity.type === "spoiler") el.addEventListener("click", () => el.classList.add("shown"));
    return el;
  }

  function buildEntities(parent, text, start, end, list) {
    let pos = start;
    let i = 0;
    while (i < list.length) {
      const e = list[i];
      if (e.offset < pos) { i++; continue; } // crosses an entity already drawn
      if (e.offset > pos) parent.appendChild(document.createTextNode(text.slice(pos, e.offset)));
      const stop = e.offset + e.length;
      const inner = [];
      let j = i + 1;
      for (; j < list.length && list[j].offset < stop; j++) {
        if (list[j].offset + list[j].length <= stop) inner.push(list[j]);
      }
      const el = entityElement(e, text.slice(e.offset, stop));
      buildEntities(el, text, e.offset, stop, inner);
      parent.appendChild(el);
      pos = stop;
      i = j;
    }
    if (pos < end) parent.appendChild(document.createTextNode(text.slice(pos, end)));
  }

  function formatted(text, entities) {
    const fragment = document.createDocumentFragment();
    const list = (Array.isArray(entities) ? entities : []).filter((e) => e && Number.isInteger(e.offset)
      && Number.isInteger(e.length) && e.offset >= 0 && e.length > 0 && e.offset + e.length <= text.length)
      .sort((a, b) => a.offset - b.offset || b.length - a.length);
    buildEntities(fragment, text, 0, text.length, list);
    return fragment;
  }

  function safeUrl(url) {
    try {
      const u = new URL(url);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (e) { return null; }
  }

  function inlineKeyboard(m) {
    const rows = (m.reply_markup && m.reply_markup.inline_keyboard) || [];
    if (!rows.length) return null;
    const box = document.createElement("div");
    box.className = "keyboard";
    for (const row of rows) {
      const rowEl = document.createElement("div");
      rowEl.className = "row";
      for (const button of row) {
        let el;
        const url = button.url ? safeUrl(button.url) : null;
        if (url) {
          el = document.createElement("a");
          el.href = url;
          el.target = "_blank";
          el.rel = "noopener noreferrer";
        } else {
          el = document.createElement("button");
          el.type = "button";
          if (typeof button.callback_data === "string") {
            el.addEventListener("click", () => press(m.message_id, button.callback_data));
          } else {
            el.disabled = true;
          }
        }
        el.dir = "auto";
        el.textContent = button.text;
        rowEl.appendChild(el);
      }
      box.appendChild(rowEl);
    }
    return box;
  }

  // "{n} votes" in the page's language (Arabic has six plural forms); the number is an
  // isolated left-to-right run inside Arabic.
  function votersText(n) {
    const forms = t("voters");
    const form = n === 0 ? "zero" : new Intl.PluralRules(lang).select(n);
    const number = lang === "ar" ? "\u2066" + n + "\u2069" : String(n);
    return (forms[form] || forms.other).replace("{n}", number);
  }

  async function vote(messageId, optionIds) {
    const { status, data } = await call("POST", "/messages/" + messageId + "/poll-answer",
                                        { user_id: userId, option_ids: optionIds });
    if (status !== 200 && data && data.error) toast(data.error);
  }

  // A poll or quiz as a Telegram app shows it: the question, options as buttons; once the
  // user voted (or the poll closed) the share of each option, and for a quiz the right and
  // wrong marks and the explanation.
  function pollBox(m) {
    const p = m.poll;
    const box = document.createElement("div");
    box.className = "poll";
    const head = document.createElement("div");
    head.className = "poll-kind";
    const quiz = p.type === "quiz";
    head.textContent = p.is_closed ? t("closedPoll")
      : t(quiz ? (p.is_anonymous ? "anonymousQuiz" : "quiz") : (p.is_anonymous ? "anonymousPoll" : "poll"));
    box.appendChild(head);
    const question = document.createElement("div");
    question.className = "question";
    question.dir = "auto";
    question.textContent = p.question;
    box.appendChild(question);
    const voted = p.chosen.length > 0;
    const results = voted || p.is_closed;
    const canVote = !p.is_closed && (!voted || p.allows_revoting) && m.from_bot;
    const correct = p.correct_option_ids || [];
    const selected = new Set();
    const list = document.createElement("div");
    list.className = "options";
    p.options.forEach((option, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "option";
      button.dataset.index = String(i);
      const mark = document.createElement("span");
      mark.className = "mark";
      if (quiz && results && correct.includes(i)) { mark.textContent = "✓"; mark.title = t("right"); button.classList.add("right"); }
      else if (quiz && results && p.chosen.includes(i)) { mark.textContent = "✗"; mark.title = t("wrong"); button.classList.add("wrong"); }
      else if (p.chosen.includes(i)) mark.textContent = "•";
      const label = document.createElement("span");
      label.className = "label-text";
      label.dir = "auto";
      label.textContent = option.text;
      button.append(mark, label);
      if (results) {
        const share = p.total_voter_count ? Math.round(100 * option.voter_count / p.total_voter_count) : 0;
        const percent = document.createElement("bdi");
        percent.className = "percent";
        percent.textContent = share + "%";
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = share + "%"; // CSSOM, allowed by the page's CSP
        button.append(percent, bar);
      }
      if (!canVote) button.disabled = true;
      else if (p.allows_multiple_answers) {
        button.addEventListener("click", () => {
          if (selected.has(i)) selected.delete(i); else selected.add(i);
          button.classList.toggle("selected", selected.has(i));
          submit.disabled = selected.size === 0;
        });
      } else {
        button.addEventListener("click", () => vote(m.message_id, [i]));
      }
      list.appendChild(button);
    });
    box.appendChild(list);
    let submit = null;
    if (canVote && p.allows_multiple_answers) {
      submit = document.createElement("button");
      submit.type = "button";
      submit.className = "poll-vote";
      submit.textContent = t("vote");
      submit.disabled = true;
      submit.addEventListener("click", () => vote(m.message_id, [...selected].sort((a, b) => a - b)));
      box.appendChild(submit);
    }
    if (voted && p.allows_revoting && !p.is_closed) {
      const retract = document.createElement("button");
      retract.type = "button";
      retract.className = "poll-retract";
      retract.textContent = t("retract");
      retract.addEventListener("click", () => vote(m.message_id, []));
      box.appendChild(retract);
    }
    if (quiz && results && p.explanation) {
      const explanation = document.createElement("div");
      explanation.className = "explanation";
      explanation.dir = "auto";
      explanation.append(t("explanation"), formatted(p.explanation, p.explanation_entities));
      box.appendChild(explanation);
    }
    const total = document.createElement("div");
    total.className = "voters";
    total.textContent = votersText(p.total_voter_count);
    box.appendChild(total);
    return box;
  }

  function bubble(m) {
    const el = document.createElement("div");
    el.className = "msg " + (m.from_bot ? "bot" : "user");
    el.dir = "auto";
    if (m.poll) {
      el.appendChild(pollBox(m));
    } else if (m.kind !== "text") {
      const media = document.createElement("div");
      media.className = "media";
      media.dir = "auto";
      media.textContent = mediaText(m);
      el.appendChild(media);
    }
    // Text or caption with its entities (bold, links, ...), as Telegram's apps draw them.
    const body = m.text !== null ? m.text : m.caption;
    if (body) {
      const text = document.createElement("div");
      text.className = m.text !== null ? "text" : "caption";
      text.dir = "auto";
      text.appendChild(formatted(body, m.text !== null ? m.entities : m.caption_entities));
      el.appendChild(text);
    }
    // The footer follows the page's direction (badges first, then the time); the time is
    // an isolated left-to-right run in the page's language, so nothing is reordered.
    const meta = document.createElement("span");
    meta.className = "meta";
    if (m.protect_content) {
      const label = document.createElement("span");
      label.className = "label protected";
      label.textContent = t("protected");
      label.title = t("protectedTitle");
      meta.appendChild(label);
    }
    if (m.edited) {
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = t("edited");
      meta.appendChild(label);
    }
    const time = document.createElement("bdi");
    time.className = "time";
    time.textContent = new Date(m.date * 1000).toLocaleTimeString(lang === "ar" ? "ar" : "en",
                                                                  { hour: "2-digit", minute: "2-digit" });
    meta.appendChild(time);
    el.appendChild(meta);
    const kb = inlineKeyboard(m);
    if (kb) el.appendChild(kb);
    return el;
  }

  function render(messages) {
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    const seen = new Set();
    let previous = null;
    for (const m of messages) {
      if (m.deleted) continue;
      seen.add(m.message_id);
      const sig = JSON.stringify([m.text, m.entities, m.caption, m.caption_entities, m.reply_markup, m.edit_count,
                                  m.protect_content, m.poll]);
      let entry = bubbles.get(m.message_id);
      if (!entry || entry.sig !== sig) {
        const el = bubble(m);
        if (entry) entry.el.replaceWith(el); // an edit: shown in place
        else if (previous) previous.after(el);
        else log.prepend(el);
        entry = { el, sig };
        bubbles.set(m.message_id, entry);
      }
      previous = entry.el;
    }
    for (const [id, entry] of bubbles) {
      if (!seen.has(id)) { entry.el.remove(); bubbles.delete(id); } // deleted messages disappear
    }
    const empty = seen.size === 0;
    $("start").hidden = !empty;
    if (empty && !log.querySelector(".empty")) {
      const hint = document.createElement("p");
      hint.className = "empty";
      hint.appendChild(isolated(t("empty")));
      log.appendChild(hint);
    } else if (!empty) {
      const hint = log.querySelector(".empty");
      if (hint) hint.remove();
    }
    if (nearBottom) log.scrollTop = log.scrollHeight;
    renderReplyKeyboard(messages);
  }

  function renderReplyKeyboard(messages) {
    const box = $("reply-keyboard");
    let current = null;
    for (const m of messages) {
      const rm = m.from_bot && !m.deleted ? m.reply_markup : null;
      if (rm && (rm.keyboard || rm.remove_keyboard)) current = rm.keyboard ? m : null;
    }
    box.replaceChildren();
    if (!current || hiddenReplyKeyboardOf === current.message_id) { box.hidden = true; return; }
    const kb = document.createElement("div");
    kb.className = "keyboard";
    for (const row of current.reply_markup.keyboard) {
      const rowEl = document.createElement("div");
      rowEl.className = "row";
      for (const button of row) {
        const label = typeof button === "string" ? button : button.text;
        const el = document.createElement("button");
        el.type = "button";
        el.dir = "auto";
        el.textContent = label;
        el.addEventListener("click", () => {
          if (current.reply_markup.one_time_keyboard) {
            hiddenReplyKeyboardOf = current.message_id;
            box.hidden = true;
          }
          sendText(label);
        });
        rowEl.appendChild(el);
      }
      kb.appendChild(rowEl);
    }
    box.appendChild(kb);
    box.hidden = false;
  }

  async function startPolling() {
    const gen = ++pollGen;
    while (gen === pollGen && userId !== null) {
      try {
        const { status, data } = await call("GET", "/chats/" + userId + "/wait?version=" + version + "&timeout=25");
        if (gen !== pollGen) return;
        if (status === 200) {
          version = data.version;
          render(data.messages);
        } else if (status === 404) {
          await newUser(); // the sandbox restarted and forgot this user
          return;
        } else if (status !== 408) {
          await new Promise((r) => setTimeout(r, 1000));
        }
      } catch (e) {
        await new Promise((r) => setTimeout(r, 1000)); // server away: retry calmly
      }
    }
  }

  async function sendText(text) {
    if (!text.trim() || userId === null) return;
    await call("POST", "/messages", { user_id: userId, text });
  }

  async function sendKind(kind, extra) {
    if (userId === null) return;
    await call("POST", "/messages", Object.assign({ user_id: userId, kind }, extra || {}));
  }

  async function press(messageId, data) {
    const { status, data: result } = await call("POST", "/callbacks", { user_id: userId, message_id: messageId, data });
    if (status !== 200) return;
    // show the bot's answerCallbackQuery text, if it gives one soon
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const { status: s, data: a } = await call("GET", "/callbacks/" + encodeURIComponent(result.callback_query_id));
      if (s === 200 && a.answered) {
        if (a.answer && a.answer.text) toast(a.answer.text, a.answer.show_alert);
        return;
      }
    }
  }

  function generatedPhotoBase64() {
    const canvas = document.createElement("canvas");
    canvas.width = 64; canvas.height = 48;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#2f8fdc"; ctx.fillRect(0, 0, 64, 48);
    ctx.fillStyle = "#fff"; ctx.fillRect(8, 8, 20, 20);
    return canvas.toDataURL("image/jpeg", 0.8).split(",")[1];
  }

  function readAsBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",")[1] || "");
      reader.onerror = reject;
      reader.readAsDataURL(file);
    });
  }

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const box = $("text");
    const text = box.value;
    box.value = "";
    sendText(text);
    box.focus();
  });
  $("text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("start").addEventListener("click", () => sendText("/start"));
  for (const button of document.querySelectorAll("#extras button[data-kind]")) {
    button.addEventListener("click", () => {
      const kind = button.dataset.kind;
      if (kind === "location") sendKind("location", { latitude: 31.9038, longitude: 35.2034 });
      else if (kind === "photo") sendKind("photo", { content_b64: generatedPhotoBase64(), width: 64, height: 48 });
      else if (kind === "voice") sendKind("voice", { content_b64: btoa("OggS sandbox voice"), duration: 2 });
      else sendKind(kind);
    });
  }
  $("file").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    const content_b64 = await readAsBase64(file);
    sendKind("document", { filename: file.name, mime_type: file.type || "application/octet-stream", content_b64 });
  });
  $("lang").addEventListener("change", () => { setLanguage($("lang").value); newUser(); });
  $("new-chat").addEventListener("click", () => newUser());

  function saveUser() {
    const entry = JSON.stringify({ userId, lang, runId });
    try { localStorage.setItem(storeKey, entry); } catch (e) { /* storage off: this tab only */ }
    sessionStorage.setItem(storeKey, entry);
  }

  function savedUser() {
    for (const store of [localStorage, sessionStorage]) {
      try {
        const saved = JSON.parse(store.getItem(storeKey) || "null");
        if (saved && saved.userId && saved.runId && saved.runId === runId) return saved;
      } catch (e) { /* unreadable: ignore */ }
    }
    return null;
  }

  async function init() {
    const info = await call("GET", "/bot").catch(() => null);
    if (info && info.status === 200) {
      $("bot-name").textContent = info.data.first_name + " · @" + info.data.username;
      runId = info.data.run_id || null;
    }
    const saved = savedUser();
    setLanguage(saved && saved.lang ? saved.lang : "ar");
    if (saved) {
      userId = saved.userId;
      document.documentElement.dataset.sandboxUser = String(userId);
      startPolling();
    } else {
      await newUser();
    }
  }
  init();
})();
