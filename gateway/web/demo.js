// The callmesh demo page: sign in with a dev token, call someone, talk, hang up.
// Everything that talks to the mesh is in /callmesh.js; this file is only the page.
// window.demo = {mesh, call} is kept up to date for tests and for poking around in the console.

import { CallMesh } from "/callmesh.js";

const $ = (id) => /** @type {any} */ (document.getElementById(id));
const el = {
  conn: /** @type {HTMLElement} */ (document.querySelector(".conn")),
  status: $("status"),
  connectForm: $("connect-form"),
  user: $("user"),
  connect: $("connect"),
  disconnect: $("disconnect"),
  callForm: $("call-form"),
  callee: $("callee"),
  call: $("call"),
  incoming: $("incoming"),
  incomingFrom: $("incoming-from"),
  incomingAvatar: $("incoming-avatar"),
  answer: $("answer"),
  reject: $("reject"),
  message: $("message"),
  error: $("error"),
  remote: $("remote"),
  remotePane: /** @type {HTMLElement} */ (document.querySelector(".pane.remote")),
  remoteOverlay: $("remote-overlay"),
  remoteName: $("remote-name"),
  ice: $("ice"),
  unmute: $("unmute"),
  local: $("local"),
  localPane: /** @type {HTMLElement} */ (document.querySelector(".pane.local")),
  localOverlay: $("local-overlay"),
  localName: $("local-name"),
  timer: $("timer"),
  camera: $("camera"),
  screen: $("screen"),
  hangup: $("hangup"),
};

/** @type {{mesh: CallMesh|null, call: import("/callmesh.js").Call|null}} */
const demo = { mesh: null, call: null };
/** @type {any} */ (window).demo = demo;

// The media this page owns. The Call never stops a track; the page stops its own.
const media = {
  /** @type {MediaStreamTrack|null} */ audio: null,
  /** @type {MediaStreamTrack|null} */ camera: null,
  /** @type {MediaStreamTrack|null} */ screen: null,
  cameraOff: false,
};
/** @type {{to: string, cancelled: boolean}|null} an outgoing call before its invite is acked */
let dialing = null;
let answering = false;
let switching = false; // camera or screen change in progress
let remoteVideoSeen = false;
let timer = 0;

// ---- connection ----

el.connectForm.addEventListener("submit", (e) => {
  e.preventDefault();
  connect();
});
el.disconnect.addEventListener("click", () => {
  const mesh = demo.mesh;
  demo.mesh = null;
  mesh?.close(); // sends bye: the other side of a call hears "hangup" at once
  render();
});
window.addEventListener("pagehide", () => demo.mesh?.close());

async function connect() {
  if (demo.mesh) return;
  clearError();
  const name = el.user.value.trim();
  if (!name) {
    showError("Enter your name first.");
    el.user.focus();
    return;
  }
  const mesh = new CallMesh({ url: wsURL(), token: () => devToken(name) });
  demo.mesh = mesh;
  mesh.addEventListener("state", () => {
    if (demo.mesh !== mesh) return;
    if (mesh.state === "closed") {
      demo.mesh = null;
      if (mesh.user) showError("The connection to the server was lost. Sign in again.");
    }
    render();
  });
  mesh.addEventListener("incoming", (e) => onIncoming(/** @type {CustomEvent} */ (e).detail));
  mesh.addEventListener("error", (e) => {
    const { code, id } = /** @type {CustomEvent} */ (e).detail;
    // Refused signals of a call that just ended are harmless; requests report their own errors.
    if (demo.mesh === mesh && !id && !["forbidden", "not_found", "invalid_state"].includes(code)) {
      showError(humanError(/** @type {CustomEvent} */ (e).detail));
    }
  });
  render();
  try {
    await mesh.connect();
    el.callee.focus();
  } catch (err) {
    if (demo.mesh === mesh) demo.mesh = null;
    const why = err.code === "connect_failed" ? "the server cannot be reached or refused the token" : err.message;
    showError(`Could not sign in as ${name}: ${why}.`);
  }
  render();
}

function wsURL() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/** A dev token from this gateway (dev mode only: anyone can be anyone). @param {string} name */
async function devToken(name) {
  const res = await fetch(`/dev/token?user=${encodeURIComponent(name)}`, { cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (res.status === 404) throw new Error("this gateway does not hand out dev tokens");
  if (!res.ok || !body.token) throw new Error(body.message || `token request failed (${res.status})`);
  return body.token;
}

// ---- calls ----

el.callForm.addEventListener("submit", (e) => {
  e.preventDefault();
  startCall();
});
el.answer.addEventListener("click", answer);
el.reject.addEventListener("click", () => demo.call?.reject().catch(showRequestError));
el.hangup.addEventListener("click", () => {
  if (dialing) {
    dialing.cancelled = true;
    render();
    return;
  }
  demo.call?.hangup().catch(showRequestError);
});

async function startCall() {
  const mesh = demo.mesh;
  const to = el.callee.value.trim();
  clearError();
  if (!mesh || mesh.state !== "open") return showError("Sign in first.");
  if (!to) {
    el.callee.focus();
    return showError("Enter the name of the person to call.");
  }
  if (demo.call || dialing) return;
  const d = (dialing = { to, cancelled: false });
  setMessage(`Calling ${to}…`, "");
  render();
  takeMedia(await getMedia());
  if (d.cancelled || demo.mesh !== mesh) {
    dialing = null;
    stopMedia();
    setMessage(`You cancelled the call to ${to}.`, "cancelled");
    return render();
  }
  try {
    const call = await mesh.call(to, { stream: outgoingStream() });
    dialing = null;
    adopt(call);
    if (d.cancelled) call.hangup().catch(showRequestError);
  } catch (err) {
    dialing = null;
    stopMedia();
    setMessage(`Could not call ${to}.`, "");
    showError(humanError(err, "call"));
    render();
  }
}

/** @param {import("/callmesh.js").Call} call */
function onIncoming(call) {
  if (demo.call || dialing) return; // busy here (the server does not ring a busy user anyway)
  clearError();
  adopt(call);
  setMessage(`${call.peer} is calling you…`, "");
  document.title = `${call.peer} is calling · callmesh`;
}

async function answer() {
  const call = demo.call;
  if (!call || call.state !== "incoming" || answering) return;
  answering = true;
  clearError();
  render();
  const stream = await getMedia();
  if (demo.call !== call || call.state !== "incoming") {
    stream?.getTracks().forEach((t) => t.stop());
    answering = false;
    return render();
  }
  takeMedia(stream);
  try {
    await call.accept({ stream: outgoingStream() });
  } catch (err) {
    if (call.state === "incoming") stopMedia();
    showError(humanError(err, "accept"));
  } finally {
    answering = false;
    render();
  }
}

/** Makes call the page's current call and follows it. @param {import("/callmesh.js").Call} call */
function adopt(call) {
  demo.call = call;
  remoteVideoSeen = false;
  el.remoteName.textContent = call.peer;
  call.addEventListener("state", render);
  call.addEventListener("ringing", () => setMessage(`Ringing ${call.peer}…`, ""));
  call.addEventListener("accepted", () => {
    document.title = "callmesh demo";
    setMessage(`In a call with ${call.peer}`, "");
    startTimer();
    const pc = call.pc;
    pc?.addEventListener("iceconnectionstatechange", () => showICE(pc));
    if (pc) showICE(pc);
  });
  call.addEventListener("track", (e) => {
    const track = /** @type {CustomEvent<RTCTrackEvent>} */ (e).detail.track;
    track.addEventListener("mute", renderRemote);
    track.addEventListener("unmute", renderRemote);
    track.addEventListener("ended", renderRemote);
    renderRemote();
  });
  call.addEventListener("remotestream", (e) => showRemote(/** @type {CustomEvent<MediaStream>} */ (e).detail));
  call.addEventListener("ended", (e) => onEnded(call, /** @type {CustomEvent} */ (e).detail));
  if (call.state === "ended") onEnded(call, { reason: call.reason, local: false });
  render();
}

/** @param {import("/callmesh.js").Call} call @param {{reason: string, local: boolean}} detail */
function onEnded(call, { reason, local }) {
  if (demo.call !== call) return;
  demo.call = null;
  document.title = "callmesh demo";
  stopMedia();
  el.remote.srcObject = null;
  el.unmute.hidden = true;
  stopTimer();
  setMessage(endedMessage(call, reason, local), reason);
  render();
}

/** The human sentence for an ended call. */
function endedMessage(call, reason, local) {
  const p = call.peer;
  const caller = call.role === "caller";
  switch (reason) {
    case "busy":
      return `${p} is busy right now.`;
    case "offline":
      return `${p} is not online.`;
    case "no_answer":
      return caller ? `${p} did not answer.` : `Missed call from ${p}.`;
    case "rejected":
      if (local) return `You declined the call from ${p}.`;
      return caller ? `${p} declined the call.` : `The call from ${p} was declined on another device.`;
    case "answered_elsewhere":
      return `The call from ${p} was answered on another device.`;
    case "disconnected":
      return local ? `You lost the connection to the server; the call with ${p} ended.` : `The connection to ${p} was lost.`;
    case "hangup":
      return local ? `You ended the call with ${p}.` : `${p} hung up.`;
    case "cancelled":
      return local ? `You cancelled the call to ${p}.` : `${p} cancelled the call. Missed call from ${p}.`;
    case "error":
      return `The call with ${p} ended because of a server error.`;
    default:
      return `The call with ${p} ended (${reason}).`;
  }
}

/** @param {{code?: string, message?: string}} err @param {string} [action] */
function humanError(err, action) {
  switch (err.code) {
    case "invalid_state":
      if (action === "call") return "You are already in a call.";
      if (action === "accept") return "Too late: the call was answered elsewhere or is over.";
      return "That is no longer possible: the call has moved on.";
    case "bad_request":
      if (action === "call") return /yourself/.test(err.message ?? "") ? "You cannot call yourself." : "That is not a valid user name.";
      return `The server refused the request: ${err.message}`;
    case "not_found":
    case "forbidden":
      return "That call is over.";
    case "unavailable":
      return "The call service is unavailable right now. Try again in a moment.";
    case "rate_limited":
      return "Too many requests: slow down a little.";
    case "disconnected":
      return "You are not connected to the server.";
    case "timeout":
      return "The server did not answer in time. Try again.";
    default:
      return err.message || String(err.code);
  }
}

function showRequestError(err) {
  showError(humanError(err));
}

// ---- media ----

el.camera.addEventListener("click", () => switchMedia(async () => {
  if (!media.cameraOff) {
    media.camera?.stop();
    media.camera = null;
    media.cameraOff = true;
  } else {
    const s = await navigator.mediaDevices.getUserMedia({ video: true });
    media.camera = s.getVideoTracks()[0];
    media.cameraOff = false;
  }
}));

el.screen.addEventListener("click", () => switchMedia(async () => {
  if (media.screen) {
    media.screen.stop();
    media.screen = null;
    return;
  }
  const s = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  const track = s.getVideoTracks()[0];
  media.screen = track;
  // The browser's own "Stop sharing" button ends the track: go back to the camera.
  track.addEventListener("ended", () => {
    if (media.screen === track) switchMedia(async () => { media.screen = null; });
  });
}));

/** Runs a change of the local media, then sends the new stream on the call. @param {() => Promise<void>} change */
async function switchMedia(change) {
  const call = demo.call;
  if (!call || switching) return;
  switching = true;
  clearError();
  render();
  try {
    await change();
    if (demo.call !== call) return stopMedia(); // the call ended meanwhile
    showLocal();
    await call.setStream(outgoingStream());
  } catch (err) {
    showError(mediaError(err));
  } finally {
    switching = false;
    render();
  }
}

/** Camera and microphone; with fallbacks, and null (receive only) when there are none. */
async function getMedia() {
  let last;
  for (const constraints of [{ audio: true, video: true }, { video: true }, { audio: true }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      last = err;
      if (err.name === "NotAllowedError") break;
    }
  }
  showError(`${mediaError(last)} The call goes on without your camera and microphone.`);
  return null;
}

/** @param {MediaStream|null} stream */
function takeMedia(stream) {
  stopMedia();
  media.audio = stream?.getAudioTracks()[0] ?? null;
  media.camera = stream?.getVideoTracks()[0] ?? null;
  media.cameraOff = !media.camera;
  showLocal();
}

/** What we send: the microphone, and the screen or else the camera (when on). */
function outgoingStream() {
  const video = media.screen ?? (media.cameraOff ? null : media.camera);
  return new MediaStream(/** @type {MediaStreamTrack[]} */ ([media.audio, video].filter(Boolean)));
}

function stopMedia() {
  for (const t of [media.audio, media.camera, media.screen]) t?.stop();
  media.audio = media.camera = media.screen = null;
  media.cameraOff = false;
  showLocal();
}

function showLocal() {
  const track = media.screen ?? (media.cameraOff ? null : media.camera);
  const current = /** @type {MediaStream|null} */ (el.local.srcObject)?.getVideoTracks()[0] ?? null;
  if (track !== current) el.local.srcObject = track ? new MediaStream([track]) : null;
  el.localPane.dataset.video = track ? (track === media.screen ? "screen" : "camera") : "none";
}

function mediaError(err) {
  switch (err?.name) {
    case "NotAllowedError":
      return "Access to the camera, microphone or screen was denied.";
    case "NotFoundError":
      return "No camera or microphone was found.";
    case "NotReadableError":
      return "The camera or microphone is in use by another program.";
    default:
      return `Media error: ${err?.message ?? err}.`;
  }
}

/** @param {MediaStream} stream */
function showRemote(stream) {
  if (el.remote.srcObject !== stream) el.remote.srcObject = stream;
  el.remote.play().catch(() => {
    // Autoplay with sound needs a click on this page: play muted and offer to unmute.
    el.remote.muted = true;
    el.remote.play().catch(() => {});
    el.unmute.hidden = false;
  });
  renderRemote();
}

el.unmute.addEventListener("click", () => {
  el.remote.muted = false;
  el.remote.play().catch(() => {});
  el.unmute.hidden = true;
});

// ---- rendering ----

function setMessage(text, reason) {
  el.message.textContent = text;
  el.message.dataset.reason = reason;
}

function showError(text) {
  el.error.textContent = text;
  el.error.hidden = false;
}

function clearError() {
  el.error.textContent = "";
  el.error.hidden = true;
}

/** @param {RTCPeerConnection} pc */
function showICE(pc) {
  if (demo.call?.pc !== pc) return;
  const s = pc.iceConnectionState;
  el.ice.textContent = { new: "starting media", checking: "connecting media", connected: "media connected", completed: "media connected", disconnected: "media interrupted", failed: "media failed", closed: "" }[s] ?? s;
  el.ice.dataset.ice = s;
  el.ice.hidden = !el.ice.textContent;
}

function startTimer() {
  stopTimer();
  const start = Date.now();
  const tick = () => {
    const s = Math.floor((Date.now() - start) / 1000);
    el.timer.textContent = `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  };
  tick();
  timer = setInterval(tick, 1000);
}

function stopTimer() {
  clearInterval(timer);
  el.timer.textContent = "";
}

/** The state shown on <body data-state>: idle, calling, ringing (incoming) or active. */
function pageState() {
  const s = demo.call?.state;
  if (dialing || s === "calling" || s === "ringing") return "calling";
  if (s === "incoming") return "ringing";
  if (s === "active") return "active";
  return "idle";
}

function renderRemote() {
  const call = demo.call;
  const stream = call?.remoteStream;
  const video = !!stream?.getVideoTracks().some((t) => t.readyState === "live" && !t.muted);
  if (video) remoteVideoSeen = true;
  el.remotePane.dataset.video = video && call?.state === "active" ? "camera" : "none";
  const peer = call?.peer ?? dialing?.to;
  let text = "No call";
  switch (pageState()) {
    case "calling":
      text = `Calling ${peer}…`;
      break;
    case "ringing":
      text = ""; // the incoming prompt covers the pane
      break;
    case "active":
      text = remoteVideoSeen ? `${peer}'s camera is off` : "Connecting…";
  }
  el.remoteOverlay.textContent = text;
}

function render() {
  const mesh = demo.mesh;
  const conn = mesh?.state ?? "closed";
  const open = conn === "open";
  const state = pageState();
  const inCall = !!demo.call && (state === "calling" || state === "active");

  document.body.dataset.state = state;
  el.conn.dataset.conn = conn;
  el.status.textContent = {
    open: `connected as ${mesh?.user}`,
    connecting: "Connecting…",
    reconnecting: `Reconnecting as ${mesh?.user}…`,
    closed: "Not connected",
  }[conn];
  el.user.disabled = el.connect.disabled = !!mesh;
  el.connect.textContent = { open: "Connected", connecting: "Connecting…", reconnecting: "Reconnecting…", closed: "Connect" }[conn];
  el.disconnect.disabled = !mesh;
  el.call.disabled = !open || state !== "idle";

  el.incoming.hidden = state !== "ringing";
  const caller = state === "ringing" ? demo.call?.peer ?? "" : "";
  el.incomingFrom.textContent = caller;
  el.incomingAvatar.textContent = [...caller][0]?.toUpperCase() ?? "";
  el.answer.disabled = el.reject.disabled = state !== "ringing" || answering;
  el.answer.textContent = answering ? "Answering…" : "Answer";
  el.hangup.disabled = !(state === "calling" || state === "active");

  el.camera.disabled = !inCall || switching;
  el.camera.textContent = media.cameraOff ? "Camera on" : "Camera off";
  el.camera.setAttribute("aria-pressed", String(media.cameraOff));
  el.screen.disabled = !inCall || switching || !navigator.mediaDevices?.getDisplayMedia;
  el.screen.textContent = media.screen ? "Stop sharing" : "Share screen";
  el.screen.setAttribute("aria-pressed", String(!!media.screen));

  el.localName.textContent = mesh?.user ? `You (${mesh.user})` : "You";
  el.localOverlay.textContent = inCall ? "Camera off" : state === "ringing" ? "Your camera starts when you answer" : "Your camera starts in a call";
  if (state !== "active") el.ice.hidden = true;
  if (!demo.call && !dialing) el.remoteName.textContent = "Remote";
  renderRemote();
}

render();
