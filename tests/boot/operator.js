#!/usr/bin/env node
// The operator's hands in the boot test (tests/boot/run), with nothing but Node's own
// modules (Node is already here for the npm test peers):
//
//   operator.js ceremony BIN OUT_DIR CEREMONY_TOML POLICY_TOML PASSPHRASE_FILE URI_FILE
//       runs `vigil-ceremony new` as an operator would at the terminal: answers `yes` to
//       the policy, reads the authenticator URI it shows, answers with the current code,
//       keeps the URI in URI_FILE (0600: it is the approval secret) and prints the
//       manifest digest (SHA-256 of manifest.json, as `import-status` shows it);
//   operator.js totp URI_FILE
//       prints the authenticator's current code; in the last 3 s of a 30-second step it
//       waits for the next one, so the code is still valid when the signer reads it.
//
// The ceremony runs with --insecure-test-kdf (cheap scrypt: a test, not real keys) and a
// fake /sys/class/net holding only `lo` (the machine running CI has a network).
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const STEP_SECS = 30;

function fail(message) {
  process.stderr.write(`operator.js: ${message}\n`);
  process.exit(1);
}

// RFC 4648 base32 (the otpauth secret), no padding.
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) fail(`the secret holds '${ch}', which is not base32`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// RFC 6238 TOTP with HMAC-SHA1 and 6 digits (what the ceremony enrols).
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(bin).padStart(6, '0');
}

function secretOf(uri) {
  const match = /[?&]secret=([A-Z2-7]+)/i.exec(uri);
  if (!match) fail(`no secret= in the authenticator URI ${uri.slice(0, 40)}...`);
  return base32Decode(match[1]);
}

function ceremony([bin, out, config, policy, passphrase, uriFile]) {
  if (!uriFile) fail('usage: operator.js ceremony BIN OUT_DIR CEREMONY_TOML POLICY_TOML PASSPHRASE_FILE URI_FILE');
  // The machine as the ceremony sees it: loopback only, no radios (a test build's hook).
  const sys = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-boot-net-'));
  fs.mkdirSync(path.join(sys, 'class', 'net', 'lo'), { recursive: true });
  fs.writeFileSync(path.join(sys, 'class', 'net', 'lo', 'operstate'), 'unknown\n');
  fs.writeFileSync(path.join(sys, 'class', 'net', 'lo', 'flags'), '0x9\n');
  // The ceremony shows its secrets on a terminal only: run it on a pseudo-terminal made by
  // util-linux's script(1), whose own record of the session goes to /dev/null.
  const argv = [bin, 'new', '--out', out, '--config', config, '--policy', policy,
    '--passphrase-file', passphrase, '--insecure-test-kdf', '--insecure-test-sysfs', sys];
  const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['--quiet', '--return', '--command', quoted, '/dev/null'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let answered = false;
  child.stdin.write('yes\n');
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    const match = /otpauth:\/\/\S+/.exec(stdout);
    if (match && !answered) {
      answered = true;
      fs.writeFileSync(uriFile, `${match[0]}\n`, { mode: 0o600 });
      const code = totp(secretOf(match[0]), Math.floor(Date.now() / 1000 / STEP_SECS));
      // Not end(): script(1) may take the end of its input for the end of the session.
      child.stdin.write(`${code}\n`);
    }
  });
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  child.on('close', (status) => {
    fs.rmSync(sys, { recursive: true, force: true });
    if (status !== 0) fail(`vigil-ceremony exited with ${status}:\n${stderr}\n${stdout.replace(/otpauth:\/\/\S+/, 'otpauth://…')}`);
    if (!answered) fail('vigil-ceremony showed no authenticator URI');
    const manifest = fs.readFileSync(path.join(out, 'manifest.json'));
    process.stdout.write(`${crypto.createHash('sha256').update(manifest).digest('hex')}\n`);
  });
}

function nextCode([uriFile]) {
  if (!uriFile) fail('usage: operator.js totp URI_FILE');
  const secret = secretOf(fs.readFileSync(uriFile, 'utf8').trim());
  const now = Date.now() / 1000;
  let step = Math.floor(now / STEP_SECS);
  if ((step + 1) * STEP_SECS - now < 3) step += 1;
  const wait = Math.max(0, step * STEP_SECS - now) * 1000;
  setTimeout(() => process.stdout.write(`${totp(secret, step)}\n`), wait);
}

const [command, ...args] = process.argv.slice(2);
if (command === 'ceremony') ceremony(args);
else if (command === 'totp') nextCode(args);
else fail('usage: operator.js ceremony ... | operator.js totp URI_FILE');
