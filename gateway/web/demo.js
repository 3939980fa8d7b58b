// The callmesh demo page: sign in (by name with a dev token under `callmesh dev`, otherwise with a
// pasted JWT), call someone or join a room, talk, hang up.
// Everything that talks to the mesh is in /callmesh.js; this file is only the page (and grid.js
// the room's video grid). window.demo = {mesh, call, room, ring} is kept up to date for tests
// and for poking around in the console.

import { CallMesh } from "/callmesh.js";
import { Grid } from "/demo/grid.js";

const $ = (id) => /** @type {any} */ (document.getElementById(id));
const el = {
  conn: /** @type {HTMLElement} */ (document.querySelector(".conn")),
  status: $("status"),
  connectForm: $("connect-form"),
  user: $("user"),
  token: $("token"),
  connect: $("connect"),
  disconnect: $("disconnect"),
  callForm: $("call-form"),
  callee: $("callee"),
  call: $("call"),
  roomForm: $("room-form"),
  roomName: $("room"),
  join: $("join"),
  inviteForm: $("invite-form"),
  inviteLabel: $("invite-label"),
  invitee: $("invitee"),
  invite: $("invite"),
  incoming: $("incoming"),
  incomingFrom: $("incoming-from"),
  incomingWhat: $("incoming-what"),
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
  grid: $("grid"),
  gridUnmute: $("grid-unmute"),
  notices: $("notices"),
  timer: $("timer"),
  mute: $("mute"),
  camera: $("camera"),
  screen: $("screen"),
  hangup: $("hangup"),
  leave: $("leave"),
};

/**
 * @type {{
 *   mesh: CallMesh|null,
 *   call: import("/callmesh.js").Call|null,
 *   room: import("/callmesh.js").Room|null,
 *   ring: import("/callmesh.js").RoomRing|null,
 * }}
 */
const demo = { mesh: null, call: null, room: null, ring: null };
/** @type {any} */ (window).demo = demo;
const grid = new Grid(el.grid, el.gridUnmute);

// The media this page owns. The Call never stops a track; the page stops its own.
const media = {
  /** @type {MediaStreamTrack|null} */ audio: null,
  /** @type {MediaStreamTrack|null} */ camera: null,
  /** @type {MediaStreamTrack|null} */ screen: null,
  cameraOff: false,
  micOff: false,
};
/** @type {{to: string, cancelled: boolean}|null} an outgoing call before its invite is acked */
let dialing = null;
/** @type {{room: string, cancelled: boolean}|null} a room being joined, before it is joined */
let entering = null;
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

// How this gateway signs people in: "dev" (GET /dev/token mints a token for any name; callmesh dev
// only) or "token" (paste a JWT the gateway accepts). The gateway says which in <body data-signin>.
const signin = document.body.dataset.signin === "dev" ? "dev" : "token";

async function connect() {
  if (demo.mesh) return;
  clearError();
  let name, token;
  if (signin === "dev") {
    name = el.user.value.trim();
    if (!name) {
      showError("Enter your name first.");
      el.user.focus();
      return;
    }
    token = () => devToken(name);
  } else {
    const jwt = el.token.value.trim();
    name = tokenUser(jwt);
    if (!name) {
      showError("Paste a JWT first: three dot-separated parts, eyJ…, with your user id in its sub.");
      el.token.focus();
      return;
    }
    token = async () => jwt;
  }
  const mesh = new CallMesh({ url: wsURL(), token });
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
  mesh.addEventListener("roomring", (e) => onRoomRing(/** @type {CustomEvent} */ (e).detail));
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
    let why = err.code === "connect_failed" ? "the server cannot be reached or refused the token" : err.message;
    if (err.code === "connect_failed" && signin === "token") {
      why += " (is it signed with this gateway's key, by its jwt.* settings, and not expired?)";
    }
    showError(`Could not sign in as ${name}: ${why}.`);
  }
  render();
}

function wsURL() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/**
 * The user (sub) of a JWT, or "" if jwt does not look like one. The gateway verifies the token;
 * this only names the user in messages before it has.
 * @param {string} jwt
 */
function tokenUser(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) return "";
  try {
    const bytes = Uint8Array.from(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return typeof payload.sub === "string" ? payload.sub : "";
  } catch {
    return "";
  }
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
el.answer.addEventListener("click", () => (demo.ring ? answerRing() : answer()));
el.reject.addEventListener("click", () => (demo.ring ?? demo.call)?.reject().catch(showRequestError));
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

/** Whether this page is in a call or a room, or on its way into one. */
function busy() {
  return !!(demo.call || dialing || demo.room || entering || demo.ring);
}

/** @param {import("/callmesh.js").Call} call */
function onIncoming(call) {
  if (busy()) return; // busy here (the server does not ring a busy user anyway)
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

/** @param {import("/callmesh.js").Call} call @param {{reason: string, local: boolean, room?: import("/callmesh.js").Room}} detail */
function onEnded(call, { reason, local, room }) {
  if (demo.call !== call) return;
  demo.call = null;
  document.title = "callmesh demo";
  if (reason === "moved" && room) { // someone was invited: the call goes on as a room, media and all
    el.remote.srcObject = null;
    el.unmute.hidden = true;
    return adoptRoom(room);
  }
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
    case "room_full":
      return "That room is full.";
    case "room_locked":
      return "That room is locked: nobody new may join.";
    case "invalid_state":
      if (action === "call") return "You are already in a call.";
      if (action === "join") return "You are already in a call or a room (maybe in another tab).";
      if (action === "invite") return "That person is already in the room, or this call can no longer become a room.";
      if (action === "accept") return "Too late: the call was answered elsewhere or is over.";
      return "That is no longer possible: the call has moved on.";
    case "bad_request":
      if (action === "call") return /yourself/.test(err.message ?? "") ? "You cannot call yourself." : "That is not a valid user name.";
      if (action === "join") return "That is not a valid room name.";
      if (action === "invite") return /yourself/.test(err.message ?? "") ? "You cannot invite yourself." : "That is not a valid user name.";
      return `The server refused the request: ${err.message}`;
    case "not_found":
    case "forbidden":
      if (action === "join") return "You may not join that room: it is invite-only, or your token does not grant it.";
      if (action === "invite") return "You may not invite into that room.";
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
    const s = await navigator.mediaDevices.getUserMedia({ video: demo.room ? ROOM_VIDEO : true });
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

el.mute.addEventListener("click", () => {
  media.micOff = !media.micOff;
  if (media.audio) media.audio.enabled = !media.micOff; // a disabled track sends silence
  demo.room?.setMute({ audio: media.micOff });
  showLocal();
  render();
});

/**
 * Runs a change of the local media, then sends the new stream on the call or to the room.
 * @param {() => Promise<void>} change
 */
async function switchMedia(change) {
  const target = demo.call ?? demo.room;
  if (!target || switching) return;
  switching = true;
  clearError();
  render();
  try {
    await change();
    if ((demo.call ?? demo.room) !== target) return stopMedia(); // the call ended, or we left, meanwhile
    showLocal();
    await target.setStream(outgoingStream());
    if (target === demo.room) demo.room.setMute({ video: !sentVideo() });
  } catch (err) {
    showError(mediaError(err));
  } finally {
    switching = false;
    render();
  }
}

/**
 * In a room every member's camera goes to every other member (one upload each): a smaller
 * picture keeps a full mesh of a few members within a home connection and a laptop's CPU.
 */
const ROOM_VIDEO = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };

/**
 * Camera and microphone; with fallbacks, and null (receive only) when there are none.
 * @param {boolean|MediaTrackConstraints} [video] the camera's constraints
 */
async function getMedia(video = true) {
  let last;
  for (const constraints of [{ audio: true, video }, { video }, { audio: true }]) {
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
  media.micOff = false;
  showLocal();
}

/** The video we send: the screen, or else the camera (when on). */
function sentVideo() {
  return media.screen ?? (media.cameraOff ? null : media.camera);
}

/** What we send: the microphone, and the screen or else the camera (when on). */
function outgoingStream() {
  return new MediaStream(/** @type {MediaStreamTrack[]} */ ([media.audio, sentVideo()].filter(Boolean)));
}

function stopMedia() {
  for (const t of [media.audio, media.camera, media.screen]) t?.stop();
  media.audio = media.camera = media.screen = null;
  media.cameraOff = false;
  media.micOff = false;
  showLocal();
}

function showLocal() {
  const track = sentVideo();
  const current = /** @type {MediaStream|null} */ (el.local.srcObject)?.getVideoTracks()[0] ?? null;
  if (track !== current) el.local.srcObject = track ? new MediaStream([track]) : null;
  el.localPane.dataset.video = track ? (track === media.screen ? "screen" : "camera") : "none";
  if (demo.room) {
    grid.show("self", {
      name: `You (${demo.mesh?.user ?? ""})`,
      stream: el.local.srcObject,
      video: !!track,
      overlay: "Your camera is off",
      micOff: media.micOff,
      mirror: track === media.camera,
      screen: track === media.screen,
    });
  }
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

// ---- rooms ----

el.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  joinRoom();
});
el.inviteForm.addEventListener("submit", (e) => {
  e.preventDefault();
  invite();
});
el.leave.addEventListener("click", () => {
  if (entering) {
    entering.cancelled = true;
    render();
    return;
  }
  demo.room?.leave().catch(showRequestError);
});

/** Joins the room named in the form, with the camera and microphone. */
async function joinRoom() {
  const mesh = demo.mesh;
  const name = el.roomName.value.trim();
  clearError();
  if (!mesh || mesh.state !== "open") return showError("Sign in first.");
  if (!name) {
    el.roomName.focus();
    return showError("Enter the name of a room: everyone who joins the same name meets there.");
  }
  if (busy()) return;
  const e = (entering = { room: name, cancelled: false });
  setMessage(`Joining room ${name}…`, "");
  render();
  takeMedia(await getMedia(ROOM_VIDEO));
  if (e.cancelled || demo.mesh !== mesh) {
    entering = null;
    stopMedia();
    setMessage(`You did not join room ${name}.`, "");
    return render();
  }
  try {
    const room = await mesh.join(name, { stream: outgoingStream() });
    entering = null;
    adoptRoom(room);
    if (e.cancelled) room.leave().catch(showRequestError);
  } catch (err) {
    entering = null;
    stopMedia();
    setMessage(`Could not join room ${name}.`, "");
    showError(humanError(err, "join"));
    render();
  }
}

/** @param {import("/callmesh.js").RoomRing} ring someone rings us into a room */
function onRoomRing(ring) {
  if (busy()) return;
  clearError();
  demo.ring = ring;
  ring.addEventListener("ended", (e) => {
    if (demo.ring !== ring) return;
    demo.ring = null;
    document.title = "callmesh demo";
    const { reason, local } = /** @type {CustomEvent} */ (e).detail;
    setMessage(ringEndedMessage(ring, reason, local), reason);
    render();
  });
  setMessage(`${ring.peer} invites you to room ${ring.room}…`, "");
  document.title = `${ring.peer} invites you · callmesh`;
  render();
}

async function answerRing() {
  const ring = demo.ring;
  if (!ring || ring.state !== "incoming" || answering) return;
  answering = true;
  clearError();
  render();
  const stream = await getMedia(ROOM_VIDEO);
  if (demo.ring !== ring || ring.state !== "incoming") {
    stream?.getTracks().forEach((t) => t.stop());
    answering = false;
    return render();
  }
  takeMedia(stream);
  entering = { room: ring.room, cancelled: false };
  demo.ring = null;
  document.title = "callmesh demo";
  try {
    const room = await ring.accept({ stream: outgoingStream() });
    entering = null;
    adoptRoom(room);
  } catch (err) {
    entering = null;
    stopMedia();
    setMessage(`Could not join room ${ring.room}.`, "");
    showError(humanError(err, "join"));
  } finally {
    answering = false;
    render();
  }
}

/** Rings someone into the room, or turns the call into a room with them in it. */
async function invite() {
  const to = el.invitee.value.trim();
  const mesh = demo.mesh;
  clearError();
  if (!to) {
    el.invitee.focus();
    return showError("Enter the name of the person to invite.");
  }
  try {
    let ring;
    if (demo.room?.state === "joined") ring = await demo.room.invite(to);
    else if (demo.call?.state === "active" && mesh) ring = await demo.call.invite(to, { room: `${mesh.user}-${randomName()}` });
    else return;
    el.invitee.value = "";
    notice(`Inviting ${to}…`);
    ring.addEventListener("ringing", () => notice(`Ringing ${to}…`));
    ring.addEventListener("ended", (e) => notice(inviteEndedMessage(to, /** @type {CustomEvent} */ (e).detail.reason)));
  } catch (err) {
    showError(humanError(err, "invite"));
  }
}

/** A short random name for a room made from a call. */
function randomName() {
  return Math.random().toString(36).slice(2, 8);
}

/** Makes room the page's room and follows it. @param {import("/callmesh.js").Room} room */
function adoptRoom(room) {
  demo.room = room;
  el.roomName.value = room.id;
  const renderMember = (/** @type {import("/callmesh.js").RoomMember} */ m) => {
    if (demo.room !== room || !room.member(m.conn)) return;
    const stream = m.stream;
    const video = !!stream?.getVideoTracks().some((t) => t.readyState === "live");
    grid.show(m.conn, {
      name: m.user,
      stream,
      video: video && !m.mute.video,
      overlay: m.mute.video ? "Camera off" : video ? "Connecting…" : "No video yet",
      micOff: m.mute.audio,
    });
  };
  const sync = () => {
    if (demo.room !== room) return;
    showLocal();
    const members = room.members;
    const conns = new Set(members.map((m) => m.conn));
    for (const key of [...el.grid.querySelectorAll(".tile[data-conn]")].map((t) => t.dataset.conn)) {
      if (!conns.has(key)) grid.remove(key);
    }
    members.forEach(renderMember);
    if (room.state === "joined") setMessage(roomMessage(room), "");
    render();
  };
  /** @param {string} type @param {(detail: any) => void} fn */
  const on = (type, fn) => room.addEventListener(type, (e) => { if (demo.room === room) fn(/** @type {CustomEvent} */ (e).detail); });
  on("state", sync);
  on("member_joined", (m) => {
    notice(`${m.user} joined`);
    sync();
  });
  on("member_left", ({ member, reason }) => {
    notice(leftNotice(member.user, reason));
    sync();
  });
  on("track", ({ member, track }) => {
    for (const ev of ["mute", "unmute", "ended"]) track.addEventListener(ev, () => renderMember(member));
    renderMember(member);
  });
  on("stream", ({ member }) => renderMember(member));
  on("mute", ({ member }) => renderMember(member));
  on("locked", ({ from }) => notice(`${from} locked the room`));
  on("unlocked", ({ from }) => notice(`${from} unlocked the room`));
  room.addEventListener("left", (e) => onLeft(room, /** @type {CustomEvent} */ (e).detail));
  startTimer();
  if (room.state === "left") return onLeft(room, { reason: room.reason ?? "left", local: false });
  // Without a camera (or with it off, for a call that moved in), say so: the others show "Camera off".
  if (!sentVideo() || media.micOff) room.setMute({ audio: media.micOff, video: !sentVideo() });
  sync();
}

/** @param {import("/callmesh.js").Room} room @param {{reason: string, local: boolean}} detail */
function onLeft(room, { reason, local }) {
  if (demo.room !== room) return;
  demo.room = null;
  grid.clear();
  stopMedia();
  stopTimer();
  setMessage(leftMessage(room.id, reason, local), reason);
  render();
}

/** The status line while in a room. @param {import("/callmesh.js").Room} room */
function roomMessage(room) {
  const names = room.members.map((m) => m.user);
  if (!names.length) return `In room ${room.id}. Nobody else is here yet.`;
  return `In room ${room.id} with ${names.join(", ")}`;
}

/** @param {string} user @param {string} reason */
function leftNotice(user, reason) {
  switch (reason) {
    case "disconnected":
      return `${user} left (connection lost)`;
    case "kicked":
      return `${user} was removed from the room`;
    default:
      return `${user} left`;
  }
}

/** @param {string} room @param {string} reason @param {boolean} local */
function leftMessage(room, reason, local) {
  switch (reason) {
    case "left":
      return local ? `You left room ${room}.` : `You are no longer in room ${room}.`;
    case "kicked":
      return `A moderator removed you from room ${room}.`;
    case "disconnected":
      return `You lost the connection to the server; you are out of room ${room}.`;
    default:
      return `You are out of room ${room} (${reason}).`;
  }
}

/** @param {import("/callmesh.js").RoomRing} ring @param {string} reason @param {boolean} local */
function ringEndedMessage(ring, reason, local) {
  const p = ring.peer;
  switch (reason) {
    case "rejected":
      return local ? `You declined ${p}'s invitation.` : `${p}'s invitation was declined on another device.`;
    case "answered_elsewhere":
      return `${p}'s invitation was answered on another device.`;
    case "cancelled":
      return `${p} cancelled the invitation to room ${ring.room}.`;
    case "no_answer":
      return `Missed invitation from ${p} to room ${ring.room}.`;
    default:
      return `The invitation from ${p} ended (${reason}).`;
  }
}

/** @param {string} to @param {string} reason */
function inviteEndedMessage(to, reason) {
  switch (reason) {
    case "busy":
      return `${to} is busy right now`;
    case "offline":
      return `${to} is not online`;
    case "rejected":
      return `${to} declined`;
    case "no_answer":
      return `${to} did not answer`;
    case "join_failed":
      return `${to} answered but could not join`;
    default:
      return `The invitation to ${to} ended (${reason})`;
  }
}

/** Shows a short notice over the video for a few seconds. @param {string} text */
function notice(text) {
  const item = document.createElement("li");
  item.textContent = text;
  el.notices.append(item);
  while (el.notices.children.length > 4) el.notices.firstElementChild?.remove();
  setTimeout(() => item.remove(), 8000);
}

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

/** The state shown on <body data-state>: idle, calling, ringing (incoming), active or room. */
function pageState() {
  if (demo.room || entering) return "room";
  if (demo.ring?.state === "incoming") return "ringing";
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
  const inRoom = demo.room?.state === "joined";
  const inCall = (!!demo.call && (state === "calling" || state === "active")) || inRoom;

  document.body.dataset.state = state;
  el.conn.dataset.conn = conn;
  el.status.textContent = {
    open: `connected as ${mesh?.user}`,
    connecting: "Connecting…",
    reconnecting: `Reconnecting as ${mesh?.user}…`,
    closed: "Not connected",
  }[conn];
  el.user.disabled = el.token.disabled = el.connect.disabled = !!mesh;
  el.connect.textContent = { open: "Connected", connecting: "Connecting…", reconnecting: "Reconnecting…", closed: "Connect" }[conn];
  el.disconnect.disabled = !mesh;
  el.call.disabled = !open || state !== "idle";
  el.join.disabled = !open || state !== "idle";
  el.roomName.disabled = state === "room";
  const canInvite = inRoom || (state === "active" && demo.call?.state === "active");
  el.inviteForm.hidden = !canInvite;
  el.inviteLabel.textContent = inRoom ? `Invite someone into ${demo.room?.id}` : "Add someone to this call";
  el.invite.disabled = !open || !canInvite;

  el.incoming.hidden = state !== "ringing";
  const caller = state === "ringing" ? (demo.ring ?? demo.call)?.peer ?? "" : "";
  el.incomingFrom.textContent = caller;
  el.incomingWhat.textContent = demo.ring ? `invites you to the room ${demo.ring.room}` : "is calling you";
  el.incomingAvatar.textContent = [...caller][0]?.toUpperCase() ?? "";
  el.answer.disabled = el.reject.disabled = state !== "ringing" || answering;
  el.answer.textContent = answering ? "Answering…" : demo.ring ? "Join" : "Answer";
  el.hangup.disabled = !(state === "calling" || state === "active");
  el.hangup.hidden = state === "room";
  el.leave.hidden = state !== "room";
  el.mute.hidden = state !== "room";
  el.mute.disabled = !inRoom || !media.audio;
  el.mute.textContent = media.micOff ? "Unmute" : "Mute";
  el.mute.setAttribute("aria-pressed", String(media.micOff));
  el.grid.hidden = state !== "room";

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
