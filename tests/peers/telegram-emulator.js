// Telegram Bot API emulator for Vigil's bot tests: npm `telegram-test-api` 4.2.1 on loopback.
//
// Usage: node tests/peers/telegram-emulator.js <port>
// Prints `listening <port>` on stdout once it accepts connections; stops on SIGTERM/SIGINT.
//
// The package has no CLI, and a few of its Bot API answers differ from the real Bot API in
// ways that break teloxide. This script overrides exactly those routes (each with the reason);
// every other request goes to the package's own express app unchanged. Test-side routes of the
// package (`POST /sendMessage`, `/sendCallback` to inject user updates, `POST /getUpdates`
// with {token, chatId} to read what the bot sent) are untouched.
'use strict';

const http = require('http');
const TelegramServer = require('telegram-test-api');

const port = Number(process.argv[2] || 9000);
const telegram = new TelegramServer({ port, host: '127.0.0.1' });

// Longest long poll we hold open (teloxide asks for 10 s by default).
const MAX_POLL_SECS = 30;

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) return resolve({});
      try {
        return resolve(JSON.parse(text));
      } catch (_) {
        return resolve(Object.fromEntries(new URLSearchParams(text)));
      }
    });
  });
}

function reply(res, result) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ok: true, result }));
}

function waitForUserUpdate(ms) {
  return new Promise((resolve) => {
    const events = ['AddedUserMessage', 'AddedUserCommand', 'AddedUserCallbackQuery'];
    const done = () => {
      clearTimeout(timer);
      events.forEach((e) => telegram.off(e, done));
      resolve();
    };
    const timer = setTimeout(done, ms);
    events.forEach((e) => telegram.on(e, done));
  });
}

const overrides = {
  // Override 1: the package's getMe lacks `is_bot`, `can_join_groups`,
  // `can_read_all_group_messages`, `supports_inline_queries` and `has_main_web_app`, which
  // teloxide's `Me` requires (its Dispatcher panics on the parse error).
  getMe: async (_token, _body, res) => reply(res, {
    id: 666,
    is_bot: true,
    first_name: 'Vigil Test Bot',
    username: 'VigilTestBot',
    can_join_groups: false,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
  }),
  // Override 2: the package has no getWebhookInfo and answers 500, on which teloxide's
  // polling sleeps 10 s before starting. Answer "no webhook", as the real API does.
  getWebhookInfo: async (_token, _body, res) => reply(res, {
    url: '',
    has_custom_certificate: false,
    pending_update_count: 0,
  }),
  // Override 3: the package's getUpdates ignores `timeout`, so a long-polling bot spins.
  // Hold the poll until an update arrives or the timeout passes, as the real API does.
  // Also adds `chat_instance` to callback queries: the package leaves it out, and teloxide's
  // `CallbackQuery` requires it (without it a button press is an unparsable update).
  // A poll whose client went away (a bot that was killed) takes nothing: the package marks
  // updates read when it hands them out, and they would be lost to the next bot.
  getUpdates: async (token, body, res) => {
    const timeout = Math.min(Number(body.timeout || 0), MAX_POLL_SECS);
    let gone = false;
    res.on('close', () => { gone = true; });
    let updates = telegram.getUpdates(token);
    if (updates.length === 0 && timeout > 0) {
      await waitForUserUpdate(timeout * 1000);
      if (gone) return;
      updates = telegram.getUpdates(token);
    }
    for (const u of updates) {
      if (u.callback_query && !u.callback_query.chat_instance) {
        u.callback_query.chat_instance = String(u.callback_query.from && u.callback_query.from.id);
      }
    }
    reply(res, updates);
  },
  // Override 4: the package's sendMessage returns `date` in milliseconds; the Bot API (and
  // teloxide) use Unix seconds, and a millisecond date does not parse as a date.
  sendMessage: async (token, body, res) => {
    const msg = telegram.addBotMessage(body, token);
    msg.date = Math.floor(msg.date / 1000);
    msg.from = { id: 666, is_bot: true, first_name: 'Vigil Test Bot', username: 'VigilTestBot' };
    reply(res, msg);
  },
  // Override 5: the package's answerCallbackQuery returns `null`; the Bot API returns `true`
  // and teloxide's request fails on `null` (the button press would be reported as an error).
  answerCallbackQuery: async (_token, _body, res) => reply(res, true),
};

const server = http.createServer(async (req, res) => {
  const m = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(req.url.split('?')[0]);
  // teloxide names methods in PascalCase (`GetMe`); the Bot API's method names are
  // case-insensitive, as the package's own (express) routes are.
  const method = m && m[2].charAt(0).toLowerCase() + m[2].slice(1);
  const override = m && Object.prototype.hasOwnProperty.call(overrides, method) && overrides[method];
  if (!override) {
    telegram.webServer(req, res);
    return;
  }
  try {
    await override(decodeURIComponent(m[1]), await readBody(req), res);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: false, description: String(e) }));
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
