// Voice in the widget, for bots whose server table says `voice = true` (docs/widget-api.md):
// - a microphone button in the composer: MediaRecorder records, POST /api/transcribe turns the recording into
//   text, and the text goes into the input for the visitor to send or edit (never sent on their behalf);
// - "read aloud" on answers: POST /api/speech, played with a stop control.
// Everything here is created by mount() in widget.js, which hands over what it needs.

const MAX_RECORDING_MS = 60000; // the server's VOICE_MAX_SECONDS may be lower: it answers 422 with the limit

export const VOICE_MESSAGES = {
  unsupported: "Voice input isn't supported in this browser.",
  denied: 'Microphone access was blocked. Allow it in your browser to speak your question.',
  noMic: 'No microphone was found.',
  empty: "I didn't catch that. Please try again.",
  recording: 'Recording… press the microphone again to stop.',
  transcribing: 'Transcribing…',
  done: 'Transcribed: edit it or press Enter to send.',
  speechFailed: "Couldn't read the answer aloud.",
};

/** The words to read aloud from an answer's Markdown: no markup, links as their text, no [n] markers. */
export function speakableText(markdown, maxChars = 2000) {
  let text = String(markdown || '')
    .replace(/```[\s\S]*?```/g, ' ')
    .replace(/!\[[^\]]*\]\([^)]*\)/g, ' ')
    .replace(/\[([^\]]+)\]\([^)]*\)/g, '$1')
    .replace(/\[\d+\]/g, '')
    .replace(/[*_`#>|~]+/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  if (text.length > maxChars) {
    const cut = text.slice(0, maxChars);
    const end = Math.max(cut.lastIndexOf('. '), cut.lastIndexOf('? '), cut.lastIndexOf('! '));
    text = end > maxChars / 2 ? cut.slice(0, end + 1) : cut;
  }
  return text;
}

/** A voice error's message: the server's reason where it gives one the visitor can act on. */
export function voiceErrorText(err, fallback) {
  if (err && typeof err.status === 'number' && err.detail && [400, 403, 413, 422, 503].includes(err.status)) {
    const detail = err.detail;
    return detail.charAt(0).toUpperCase() + detail.slice(1) + (/[.!?]$/.test(detail) ? '' : '.');
  }
  return fallback(err);
}

function pickMimeType() {
  const candidates = ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus', 'audio/mp4'];
  for (const type of candidates) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(type)) return type;
  }
  return '';
}

/**
 * The microphone button and its status line. `ui`: { h, iconButton, input, authed, httpError, errorText,
 * onText(text) }. Returns { button, status, setAvailable(bool), cancel() }.
 */
export function createMic(ui) {
  const button = ui.iconButton('mic', 'Speak your question', {
    'data-testid': 'sb-mic',
    'aria-pressed': 'false',
    hidden: true,
  });
  button.classList.add('sb-mic');
  const status = ui.h('div', { class: 'sb-voice-status', role: 'status', 'data-testid': 'sb-voice-status' });
  let recorder = null;
  let chunks = [];
  let stopTimer = 0;
  let discard = false;
  let busy = false;

  function say(text) {
    status.textContent = text || '';
  }

  function setRecording(on) {
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.setAttribute('aria-label', on ? 'Stop recording' : 'Speak your question');
    button.title = on ? 'Stop recording' : 'Speak your question';
    button.classList.toggle('sb-recording', on);
  }

  async function startRecording() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      say(VOICE_MESSAGES.unsupported);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      say(err && err.name === 'NotFoundError' ? VOICE_MESSAGES.noMic : VOICE_MESSAGES.denied);
      return;
    }
    const mimeType = pickMimeType();
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
    chunks = [];
    discard = false;
    recorder.addEventListener('dataavailable', (event) => {
      if (event.data && event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener('stop', () => {
      stream.getTracks().forEach((track) => track.stop());
      clearTimeout(stopTimer);
      setRecording(false);
      const type = recorder.mimeType || mimeType || 'audio/webm';
      recorder = null;
      if (discard) {
        say('');
        return;
      }
      transcribe(new Blob(chunks, { type: type.split(';')[0] }));
    });
    recorder.start();
    setRecording(true);
    say(VOICE_MESSAGES.recording);
    stopTimer = setTimeout(stopRecording, MAX_RECORDING_MS);
  }

  function stopRecording() {
    if (recorder && recorder.state !== 'inactive') recorder.stop();
  }

  async function transcribe(blob) {
    busy = true;
    button.disabled = true;
    say(VOICE_MESSAGES.transcribing);
    try {
      const res = await ui.authed('/api/transcribe', { method: 'POST', body: blob });
      if (!res.ok) throw await ui.httpError(res);
      const data = await res.json();
      const text = data && typeof data.text === 'string' ? data.text.trim() : '';
      if (!text) {
        say(VOICE_MESSAGES.empty);
        return;
      }
      ui.onText(text);
      say(VOICE_MESSAGES.done);
    } catch (err) {
      say(voiceErrorText(err, ui.errorText));
    } finally {
      busy = false;
      button.disabled = false;
    }
  }

  button.addEventListener('click', () => {
    if (busy) return;
    if (recorder) stopRecording();
    else startRecording();
  });
  // Escape while recording throws the recording away (and does not close the panel).
  button.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && recorder) {
      event.stopPropagation();
      cancel();
    }
  });

  function cancel() {
    discard = true;
    stopRecording();
  }

  return {
    button,
    status,
    setAvailable(on) {
      button.hidden = !on;
      if (!on) cancel();
    },
    cancel,
  };
}

/**
 * "Read aloud" for one answer: a toggle that fetches the speech and plays it, and stops it. Only one answer
 * plays at a time (`player` is shared by the widget). `ui`: { iconButton, icon, authed, httpError, errorText,
 * say(text) }.
 */
export function createPlayer() {
  let current = null; // { audio, url, button }
  function stop() {
    if (!current) return;
    current.audio.pause();
    URL.revokeObjectURL(current.url);
    setPlaying(current.button, false);
    current = null;
  }
  function setPlaying(button, on) {
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.setAttribute('aria-label', on ? 'Stop reading aloud' : 'Read answer aloud');
    button.title = on ? 'Stop reading aloud' : 'Read answer aloud';
  }
  function readAloudButton(markdown, ui) {
    const button = ui.iconButton('speaker', 'Read answer aloud', { 'data-testid': 'sb-read-aloud', 'aria-pressed': 'false' });
    button.addEventListener('click', async () => {
      if (current && current.button === button) {
        stop();
        return;
      }
      stop();
      button.disabled = true;
      try {
        const res = await ui.authed('/api/speech', { method: 'POST', body: { text: speakableText(markdown) } });
        if (!res.ok) throw await ui.httpError(res);
        const url = URL.createObjectURL(await res.blob());
        const audio = new Audio(url);
        current = { audio, url, button };
        setPlaying(button, true);
        audio.addEventListener('ended', () => current && current.audio === audio && stop());
        await audio.play();
      } catch (err) {
        stop();
        ui.say(voiceErrorText(err, () => VOICE_MESSAGES.speechFailed));
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }
  return { readAloudButton, stop };
}
