// The live microphone's recorder, page side (gr.HTML js_on_load in ser/demo/live_page.py; the server side is
// ser/demo/live_capture.py). It captures PCM with an AudioWorklet, shows the input level and the time recorded, and sends
// what it captured in numbered pieces: one piece in flight at a time, holding everything captured since the last
// one, sent again until the server acknowledges it. Nothing is dropped while the server is busy: the next piece is
// only larger. The page's Record and Stop buttons call window.serLive.start() and .stop() (their events' js).
// Variables given by gradio: element, props (send_seconds, max_seconds), server (open_capture, receive_audio:
// ser/demo/live_capture.py's Captures.open and .receive).

const WORKLET = `
class SerRecorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(2048);  // ~46 ms at 44.1 kHz: the level meter updates ~20 times a second
    this.used = 0;
    this.on = true;
    this.port.onmessage = (event) => {
      if (event.data === "flush") { this.post(); this.on = false; this.port.postMessage("flushed"); }
    };
  }
  post() {
    if (this.used) { this.port.postMessage(this.block.slice(0, this.used)); this.used = 0; }
  }
  process(inputs) {
    if (!this.on) return false;
    const channels = inputs[0];
    if (channels && channels.length) {
      const frames = channels[0].length, count = channels.length;
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < count; c++) sum += channels[c][i];
        this.block[this.used++] = sum / count;  // channels averaged, as the model was trained
        if (this.used === this.block.length) this.post();
      }
    }
    return true;
  }
}
registerProcessor("ser-recorder", SerRecorder);
`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function base64(int16) {
  const bytes = new Uint8Array(int16.buffer, int16.byteOffset, int16.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function pcm16(blocks, frames) {
  const out = new Int16Array(frames);
  let at = 0;
  for (const block of blocks) {
    for (let i = 0; i < block.length; i++) {
      const s = Math.max(-1, Math.min(1, block[i]));
      out[at++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
    }
  }
  return out;
}

class Recorder {
  constructor(root) {
    this.root = root;
    this.level = root.querySelector(".ser-level");
    this.time = root.querySelector(".ser-time");
    this.reset();
  }

  reset() {
    this.key = null;
    this.rate = null;
    this.waiting = [];  // captured blocks not sent yet
    this.waitingFrames = 0;
    this.captured = 0;  // frames captured
    this.acknowledged = 0;  // frames the server has
    this.heard = 0;  // the seconds of audio the server has (its own count, at 16 kHz)
    this.piece = 0;
    this.sending = null;
    this.error = null;
    this.started = null;
    this.stopped = null;
  }

  recorded() {
    if (this.started === null) return 0;
    return ((this.stopped ?? performance.now()) - this.started) / 1000;
  }

  report() {
    return JSON.stringify({key: this.key, recorded: this.recorded(), heard: this.heard, error: this.error,
                           stopped: this.stopped !== null,
                           unsent: (this.captured - this.acknowledged) / (this.rate || 1)});
  }

  async start() {
    if (this.starting) return this.starting;
    this.starting = this.open().finally(() => { this.starting = null; });
    return this.starting;
  }

  async open() {
    if (this.key && this.stopped === null) return this.report();
    this.reset();
    let context;
    try {
      context = new AudioContext();  // created in the click, so the browser lets it start
      this.stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false,
        noiseSuppression: false, autoGainControl: false}});
    } catch (err) {
      context?.close();
      this.error = !navigator.mediaDevices ? "This browser gives the page no microphone (it needs https or localhost)."
        : err?.name === "NotAllowedError" ? "Please allow the microphone: the browser did not let the page use it."
        : "The microphone could not be opened. Please check that one is connected.";
      return this.report();
    }
    this.context = context;
    this.rate = context.sampleRate;
    const answer = await server.open_capture(this.rate).catch(() => null);
    if (!answer || !answer.key) {
      this.error = answer?.error || "The server did not answer. Please try again.";
      this.close();
      return this.report();
    }
    this.key = answer.key;
    try {
      const source = context.createMediaStreamSource(this.stream);
      const url = URL.createObjectURL(new Blob([WORKLET], {type: "application/javascript"}));
      await context.audioWorklet.addModule(url);
      this.node = new AudioWorkletNode(context, "ser-recorder");
      this.flushed = new Promise((resolve) => {
        this.node.port.onmessage = (event) => event.data === "flushed" ? resolve() : this.take(event.data);
      });
      this.started = performance.now();  // the recorded time runs from the moment the microphone is connected
      source.connect(this.node);
      await context.resume();
    } catch (err) {
      console.error(err);
      this.error = "This browser cannot record here (it lacks AudioWorklet). Please try a current browser.";
      this.started = this.key = null;  // the server forgets the unused recording by itself
      this.close();
      return this.report();
    }
    this.root.classList.add("recording");
    return this.report();
  }

  take(block) {
    this.waiting.push(block);
    this.waitingFrames += block.length;
    this.captured += block.length;
    let sum = 0;
    for (let i = 0; i < block.length; i++) sum += block[i] * block[i];
    const dbfs = 10 * Math.log10(sum / block.length + 1e-12);
    this.level.value = Math.max(-60, Math.min(0, dbfs));
    this.time.textContent = clock(this.recorded());
    if (this.recorded() >= props.max_seconds) document.getElementById("live-stop")?.click();
    this.send(false);
  }

  // Sends what waits, as one piece, unless a piece is out or (before the end) less than send_seconds waits.
  send(last) {
    if (this.sending || !this.waitingFrames || this.error) return this.sending;
    if (!last && this.waitingFrames < props.send_seconds * this.rate) return null;
    const frames = Math.min(this.waitingFrames, 30 * this.rate), blocks = [];
    let taken = 0;
    while (taken < frames) {
      const block = this.waiting.shift();
      if (taken + block.length > frames) {  // at most 30 s a piece; the rest goes next
        this.waiting.unshift(block.subarray(frames - taken));
        blocks.push(block.subarray(0, frames - taken));
        taken = frames;
      } else {
        blocks.push(block);
        taken += block.length;
      }
    }
    this.waitingFrames -= frames;
    const piece = {key: this.key, piece: this.piece, pcm: base64(pcm16(blocks, frames))};
    this.sending = this.deliver(piece, frames).finally(() => {
      this.sending = null;
      if (this.waitingFrames) this.send(last || this.stopped !== null);
    });
    return this.sending;
  }

  async deliver(piece, frames) {
    for (let attempt = 0; ; attempt++) {
      const answer = await server.receive_audio(piece).catch(() => null);
      if (answer && answer.error) { this.error = answer.error; return; }
      if (answer && answer.next > piece.piece) {
        this.piece = answer.next;
        this.acknowledged += frames;
        this.heard = answer.seconds;
        if (answer.full) document.getElementById("live-stop")?.click();
        return;
      }
      await sleep(Math.min(2000, 100 * 2 ** attempt));  // no answer: the same piece again (added once)
    }
  }

  close() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.context?.close();
    this.stream = this.context = this.node = null;
    this.root.classList.remove("recording");
    this.level.value = -60;
  }

  async stop() {
    if (!this.key) return this.report();
    if (this.stopped === null) {
      this.stopped = performance.now();
      this.node?.port.postMessage("flush");
      await Promise.race([this.flushed, sleep(2000)]);
      this.close();
    }
    const deadline = performance.now() + 60000;  // the rest of what was captured, before the analysis
    while ((this.waitingFrames || this.sending) && !this.error && performance.now() < deadline) {
      await (this.send(true) || sleep(50));
    }
    return this.report();
  }
}

window.serLive = new Recorder(element);
