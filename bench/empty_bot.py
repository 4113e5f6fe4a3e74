"""Baseline for bench/report_throughput.py: an aiogram 3 bot that does the least possible work.

One message handler and one callback handler; each answers with a fixed message carrying a
one-button inline keyboard (and answers the callback query first, as Nazaha does), so the
benchmark client has an answer to wait for. Long polling, aiogram defaults otherwise (its
start-up objects are frozen out of the garbage collector, as Nazaha's are).

    BENCH_BOT_TOKEN=... BENCH_API_URL=http://127.0.0.1:PORT python bench/empty_bot.py
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Next", callback_data="b:next")]])
dp = Dispatcher()


@dp.message()
async def on_message(message: Message, bot: Bot) -> None:
    await bot.send_message(message.chat.id, "ok", reply_markup=KEYBOARD)


@dp.callback_query()
async def on_callback(query: CallbackQuery, bot: Bot) -> None:
    await bot.answer_callback_query(query.id)
    await bot.send_message(query.from_user.id, "ok", reply_markup=KEYBOARD)


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["BENCH_API_URL"]))
    bot = Bot(os.environ["BENCH_BOT_TOKEN"], session=session)
    # As Nazaha does (nazaha.bot.app.freeze_startup_objects): start-up objects stay out of
    # full garbage collections, so neither bot pauses for them during the measurement.
    gc.collect()
    gc.freeze()
    await dp.start_polling(bot, handle_signals=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
