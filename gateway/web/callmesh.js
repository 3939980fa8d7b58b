/**
 * callmesh.js: the browser client of callmesh, a signaling mesh for WebRTC calls: one-to-one
 * calls and full-mesh group rooms.
 *
 * One ES module, no dependencies, no build step. Every gateway serves it at `/callmesh.js`.
 * The wire protocol it speaks is messages/PROTOCOL.md in the callmesh repository.
 *
 * What it does for you:
 * - requests (`invite`, `accept`, `hangup`, …) are promises, matched to their `ack` / `error` by id;
 * - it reconnects after a drop (exponential backoff with jitter, 250 ms … 10 s) and resumes the
 *   session: calls and rooms go on and what was sent meanwhile arrives; on `goaway` it moves after
 *   the delay;
 * - it sends `ping` every 20 s and refreshes the JWT about 60 s before it expires, and at once
 *   when the server warns with `expiring`;
 * - each {@link Call} drives an RTCPeerConnection with the W3C "perfect negotiation" pattern
 *   (the callee is polite), buffers early ICE candidates, and renegotiates when you change the
 *   outgoing media with {@link Call#setStream} (camera on/off, screen share);
 * - each {@link Room} drives one such RTCPeerConnection per other member connection (the newer
 *   member of each pair offers and is polite, PROTOCOL.md §14.8), tells you who joins and leaves,
 *   and carries each member's mute state.
 *
 * Usage:
 *
 * ```js
 * import { CallMesh } from "https://gateway.example.com/callmesh.js";
 *
 * const mesh = new CallMesh({
 *   url: "wss://gateway.example.com/ws",
 *   token: async () => (await (await fetch("/my-app/callmesh-token")).json()).token,
 * });
 * mesh.addEventListener("incoming", async ({ detail: call }) => {
 *   const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
 *   show(call);
 *   await call.accept({ stream });               // or: await call.reject()
 * });
 * await mesh.connect();
 *
 * const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
 * const call = await mesh.call("bob", { stream });
 * show(call);
 *
 * function show(call) {
 *   call.addEventListener("remotestream", ({ detail }) => { remoteVideo.srcObject = detail; });
 *   call.addEventListener("ended", ({ detail }) => console.log("ended:", detail.reason));
 * }
 * // later: await call.setStream(otherStream); await call.hangup(); mesh.close();
 * ```
 *
 * A group call, in a room (the token must grant it, or someone in it must invite you):
 *
 * ```js
 * const room = await mesh.join("standup", { stream });
 * for (const member of room.members) showTile(member);        // who was there before you
 * room.addEventListener("member_joined", ({ detail: member }) => showTile(member));
 * room.addEventListener("stream", ({ detail: { member, stream } }) => tileOf(member).srcObject = stream);
 * room.addEventListener("mute", ({ detail: { member, mute } }) => showMute(member, mute));
 * room.addEventListener("member_left", ({ detail: { member, reason } }) => dropTile(member));
 * room.addEventListener("left", ({ detail: { reason } }) => console.log("out of the room:", reason));
 * mesh.addEventListener("roomring", async ({ detail: ring }) => {   // someone rings you into a room
 *   const room = await ring.accept({ stream });                       // or: await ring.reject()
 * });
 * // later: await room.invite("carol"); room.setMute({ audio: true }); await room.leave();
 * ```
 *
 * The Call and the Room never stop a track: the streams you pass belong to you, so stop them when
 * the call ends or you leave the room.
 *
 * @module callmesh
 */

const PING_INTERVAL_MS = 20_000;
const PING_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
const WELCOME_TIMEOUT_MS = 15_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;
const REFRESH_BEFORE_MS = 60_000;
const ACCEPT_RACE_MS = 3_000;
/** After a resume, how long a member the server no longer lists may still be named by a held `member_left`. */
const RESYNC_MS = 3_000;

/** Close codes after which reconnecting is pointless (PROTOCOL.md §10). */
const FINAL_CLOSE_CODES = new Set([4001, 4004]);
/** Error codes meaning "this call is not (or no longer) yours": a hangup or reject is then done. */
const GONE_CODES = new Set(["not_found", "forbidden"]);
/** Codes of errors this client makes itself (the server never sends them as frames). */
const CLIENT_CODES = new Set(["disconnected", "timeout", "connect_failed", "unauthorized"]);

// Internal methods shared between CallMesh, Call, Room and RoomRing, kept off the public API.
const RECEIVE = Symbol("receive");
const END = Symbol("end");
const SIGNAL = Symbol("signal");
const FORGET = Symbol("forget");
const ROOM_SIGNAL = Symbol("roomSignal");
const ENTER = Symbol("enter");
const RING = Symbol("ring");
const DETACH = Symbol("detach");
const ADOPT = Symbol("adopt");
const RESUME = Symbol("resume");
const READY = Symbol("ready");
const LINK = Symbol("link");
const MUTE = Symbol("mute");

/**
 * `welcome.data`: what the server says about this connection (PROTOCOL.md §6).
 * @typedef {object} Welcome
 * @property {string} user your user id (the token's `sub`)
 * @property {string} conn this connection's id
 * @property {string} resume resume token for this session
 * @property {number} resume_grace_ms how long a dropped session is held
 * @property {number} ring_timeout_ms how long an unanswered call rings
 * @property {RTCIceServer[]} ice_servers for `new RTCPeerConnection({iceServers})`
 * @property {"all"|"relay"} ice_transport_policy for `new RTCPeerConnection({iceTransportPolicy})`:
 *   "relay" when the deployment sends every call through TURN
 * @property {boolean} resumed whether this connection restored the previous session
 * @property {{call: string, state: string, role: string, peer: string, room?: string}[]} calls live calls
 *   after a resume (a ring into a room has its `room`)
 * @property {{room: string, members: {user: string, conn: string}[]}[]} [rooms] the rooms this
 *   session is in, after a resume (PROTOCOL.md §14.4)
 */

/**
 * One protocol frame (PROTOCOL.md §3).
 * @typedef {object} Envelope
 * @property {string} type
 * @property {string} [id]
 * @property {string} [call]
 * @property {string} [to]
 * @property {string} [from]
 * @property {string} [reason]
 * @property {string} [code]
 * @property {string} [message]
 * @property {string} [room]
 * @property {string} [conn]
 * @property {string} [to_conn]
 * @property {string} [from_conn]
 * @property {{user: string, conn: string}} [member]
 * @property {{user: string, conn: string}[]} [members]
 * @property {any} [data]
 */

/**
 * Connection state of a {@link CallMesh}.
 * @typedef {"connecting"|"open"|"reconnecting"|"closed"} MeshState
 */

/**
 * State of a {@link Call}.
 * @typedef {"calling"|"ringing"|"incoming"|"active"|"ended"} CallState
 */

/**
 * State of a {@link Room}: `"joining"` until the server's `joined`, `"joined"`, then `"left"`.
 * @typedef {"joining"|"joined"|"left"} RoomState
 */

/**
 * State of a {@link RoomRing}: an outgoing ring goes `"calling"` → `"ringing"` → `"accepted"`, an
 * incoming one `"incoming"` → `"accepted"`; either may end (`"ended"`, with {@link RoomRing#reason}).
 * @typedef {"calling"|"ringing"|"incoming"|"accepted"|"ended"} RingState
 */

/**
 * A member's mute state, as the member announced it with {@link Room#setMute}.
 * @typedef {{audio: boolean, video: boolean}} MuteState
 */

/**
 * Why a call ended: a server reason (PROTOCOL.md §8: `hangup`, `cancelled`, `rejected`, `busy`,
 * `offline`, `no_answer`, `answered_elsewhere`, `disconnected`, `error`), or, for a call ended
 * on this side, the reason the other side hears (`hangup`, `cancelled`, `rejected`), or
 * `disconnected` when this client lost its session.
 * @typedef {string} EndReason
 */

/**
 * An error answered by the server (`error` frame) or raised by the client. `code` is one of the
 * protocol's error codes (PROTOCOL.md §7) or a client code: `disconnected` (not connected, or
 * the connection dropped before the answer), `timeout` (no answer in 15 s), `connect_failed`,
 * `invalid_state` (a Call method used in the wrong state).
 */
export class CallMeshError extends Error {
  /**
   * @param {string} code machine-readable code
   * @param {string} [message] human text
   * @param {string} [id] the id of the request it answers
   */
  constructor(code, message, id) {
    super(message ? `${code}: ${message}` : code);
    this.name = "CallMeshError";
    /** @type {string} */
    this.code = code;
    /** @type {string|undefined} */
    this.id = id;
  }
}

/**
 * A connection to a callmesh gateway: your presence, and the factory of your calls and rooms.
 *
 * Events (all `CustomEvent`s):
 * - `"welcome"`: detail {@link Welcome}, after every (re)connect;
 * - `"state"`: detail {@link MeshState};
 * - `"incoming"`: detail {@link Call}, a call rings here (state `"incoming"`);
 * - `"roomring"`: detail {@link RoomRing}, someone rings you into a room (state `"incoming"`);
 * - `"room"`: detail {@link Room}, you are in a room you did not join yourself: a call of yours
 *   moved into it (its Call ended with reason `"moved"`, PROTOCOL.md §14.7);
 * - `"expiring"`: detail `{expires_in_ms}`, the server will close the session (4002) that soon
 *   unless the token is refreshed; with a token function the client refreshes at once by itself;
 * - `"error"`: detail `{code, message, id}`, every `error` frame from the server, and client-side
 *   failures that no promise reports (a failed token refresh).
 */
export class CallMesh extends EventTarget {
  #url;
  #token;
  #reconnect;
  #fetch;

  /** @type {WebSocket|null} */
  #ws = null;
  /** @type {MeshState} */
  #state = "closed";
  /** @type {Welcome|null} */
  #welcome = null;
  #jwt = "";
  #seq = 0;
  /** @type {Map<string, {resolve: Function, reject: Function, timer: any}>} */
  #pending = new Map();
  /** @type {Map<string, Call>} */
  #calls = new Map();
  /** @type {Map<string, Room>} by room id */
  #rooms = new Map();
  /** @type {Map<string, RoomRing>} by the ring's call id */
  #rings = new Map();
  /** @type {Envelope[]} signals sent while reconnecting; sent only if the session resumes */
  #outbox = [];
  /** @type {{promise: Promise<Welcome>, resolve: Function, reject: Function}|null} */
  #ready = null;
  #everOpen = false; // a welcome arrived since connect(): from then on, drops reconnect
  #attempt = 0;
  #refreshing = false; // a refresh is under way
  #timers = { retry: 0, ping: 0, refresh: 0, welcome: 0, grace: 0, goaway: 0 };

  /**
   * @param {object} options
   * @param {string} options.url the gateway's WebSocket URL, `ws(s)://host/ws` (an `http(s)` URL
   *   or a path is resolved against the page and switched to `ws(s)`)
   * @param {string | ((ctx: {fetch: typeof fetch}) => string|Promise<string>)} options.token the
   *   JWT, or a function returning one. A function is called on every (re)connect and about 60 s
   *   before the current token's `exp`, to send `refresh`. It receives `{fetch: fetchImpl}`.
   * @param {boolean} [options.reconnect=true] reconnect automatically after a drop
   * @param {typeof fetch} [options.fetchImpl] the fetch handed to a token function
   *   (default: `globalThis.fetch`); the client itself makes no HTTP request
   */
  constructor({ url, token, reconnect = true, fetchImpl } = /** @type {any} */ ({})) {
    super();
    if (!url) throw new TypeError("CallMesh: url is required");
    if (typeof token !== "string" && typeof token !== "function") {
      throw new TypeError("CallMesh: token must be a string or a function");
    }
    this.#url = url;
    this.#token = token;
    this.#reconnect = reconnect;
    this.#fetch = fetchImpl ?? globalThis.fetch?.bind(globalThis);
  }

  /** Your user id, from the latest `welcome` (null before the first). @type {string|null} */
  get user() { return this.#welcome?.user ?? null; }

  /** This connection's id, from the latest `welcome`. @type {string|null} */
  get conn() { return this.#welcome?.conn ?? null; }

  /** ICE servers from the latest `welcome`, for RTCPeerConnection. @type {RTCIceServer[]} */
  get iceServers() { return this.#welcome?.ice_servers ?? []; }

  /**
   * The RTCPeerConnection configuration the latest `welcome` calls for: its ICE servers and
   * ICE transport policy. @type {RTCConfiguration}
   */
  get rtcConfiguration() {
    return { iceServers: this.iceServers, iceTransportPolicy: this.#welcome?.ice_transport_policy ?? "all" };
  }

  /** The latest `welcome.data`. @type {Welcome|null} */
  get welcome() { return this.#welcome; }

  /** Connection state. @type {MeshState} */
  get state() { return this.#state; }

  /** The calls that have not ended. @type {Call[]} */
  get calls() { return [...this.#calls.values()]; }

  /** The rooms you are in or joining. @type {Room[]} */
  get rooms() { return [...this.#rooms.values()]; }

  /** The room rings that have not ended, yours and those to you. @type {RoomRing[]} */
  get rings() { return [...this.#rings.values()]; }

  /**
   * Connects, and resolves with `welcome.data` once the server has sent `welcome` (you can be
   * called from then on). If the very first attempt fails, the promise rejects (`connect_failed`,
   * or the token function's error) and the mesh is `"closed"`; once connected, drops are
   * reconnected automatically (unless `reconnect` is false).
   * @returns {Promise<Welcome>}
   */
  connect() {
    if (this.#state === "open") return Promise.resolve(/** @type {Welcome} */ (this.#welcome));
    if (this.#ready) return this.#ready.promise;
    const ready = (this.#ready = deferred());
    this.#everOpen = false;
    this.#attempt = 0;
    this.#setState("connecting");
    this.#dial();
    return ready.promise;
  }

  /**
   * Calls user `to`: sends `invite` and resolves after its `ack` with the new Call, in state
   * `"calling"`. `ringing`, `accepted` or `ended` (`busy`, `offline`, …) follow as events on it.
   * The RTCPeerConnection is created when the callee accepts.
   * @param {string} to the callee's user id
   * @param {object} [options]
   * @param {MediaStream|null} [options.stream] the media to send (yours: the Call never stops it)
   * @param {any} [options.data] invite metadata, passed to the callee as `call.data`
   * @returns {Promise<Call>} rejects with a {@link CallMeshError} (`code` = the server's error code)
   */
  async call(to, { stream = null, data } = {}) {
    /** @type {Record<string, any>} */
    const fields = { to };
    if (data !== undefined) fields.data = data;
    const ack = await this.request("invite", fields);
    // Registered before any later frame is handled: frames are separate tasks, this is a microtask.
    const call = new Call(this, { id: /** @type {string} */ (ack.call), peer: to, role: "caller", state: "calling", stream });
    this.#calls.set(call.id, call);
    return call;
  }

  /**
   * Joins room `room` (PROTOCOL.md §14), creating it if it does not exist: sends `join` and
   * resolves once the server's `joined` arrived, with the Room in state `"joined"`. Its
   * `members` are then everyone who was there before you; you offer to each of them. Joining
   * a room you are in (or joining) again gives the same Room.
   * @param {string} room the room id, chosen by the application
   * @param {object} [options]
   * @param {MediaStream|null} [options.stream] the media to send to every member (yours: the
   *   Room never stops it)
   * @param {boolean} [options.inviteOnly] when this join creates the room: only members may
   *   bring others in, by {@link Room#invite}
   * @returns {Promise<Room>} rejects with a {@link CallMeshError}: `forbidden` (no grant),
   *   `room_full`, `room_locked`, `invalid_state` (you are busy, or in the room on another
   *   connection), `disconnected`, …
   */
  async join(room, { stream = null, inviteOnly = false } = {}) {
    const existing = this.#rooms.get(room);
    if (existing) return existing[READY];
    const r = this[ENTER](room, stream);
    /** @type {Record<string, any>} */
    const fields = { room };
    if (inviteOnly) fields.data = { invite_only: true };
    try {
      await this.request("join", fields);
    } catch (/** @type {any} */ err) {
      r[END](err?.code ?? "error", true);
      throw err;
    }
    return r[READY];
  }

  /**
   * Sends one request with a fresh unique `id` and resolves with the `ack` (or `pong`) that
   * answers it.
   * @param {string} type a client message type (`invite`, `accept`, `hangup`, `ping`, …)
   * @param {Record<string, any>} [fields] the other envelope fields (`to`, `call`, `data`)
   * @returns {Promise<Envelope>} rejects with a {@link CallMeshError}: the server's `error`
   *   (`.code`), or `disconnected` / `timeout`
   */
  request(type, fields = {}) {
    return this.#request(type, fields, REQUEST_TIMEOUT_MS);
  }

  /**
   * Leaves: sends `bye` (the server ends your calls at once, no resume grace), closes the
   * socket and does not reconnect. Your calls end locally. `connect()` may be called again.
   */
  close() {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      if (ws.readyState === WebSocket.OPEN) {
        try { ws.send(JSON.stringify({ type: "bye" })); } catch { /* closing anyway */ }
      }
      ws.close(1000, "bye");
    }
    this.#stopTimers();
    this.#failPending("disconnected", "the connection was closed");
    for (const call of this.#calls.values()) call[END](leaveReason(call), true);
    for (const room of this.#rooms.values()) room[END]("left", true);
    for (const ring of this.#rings.values()) ring[END](ring.direction === "outgoing" ? "cancelled" : "rejected", true);
    this.#outbox = [];
    this.#ready?.reject(new CallMeshError("disconnected", "closed"));
    this.#ready = null;
    this.#setState("closed");
  }

  // ---- internals ----

  /** @param {string} type @param {Record<string, any>} fields @param {number} timeoutMs */
  #request(type, fields, timeoutMs) {
    if (this.#state !== "open" || !this.#ws) {
      return Promise.reject(new CallMeshError("disconnected", `cannot send ${type}: not connected`));
    }
    const id = `r${++this.#seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new CallMeshError("timeout", `no answer to ${type}`, id));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send({ ...fields, type, id });
    });
  }

  /** @param {Envelope} env */
  #send(env) {
    this.#ws?.send(JSON.stringify(env));
  }

  /**
   * A signal for a call: sent now, or held while reconnecting (kept only if the session resumes).
   * @param {string} callId @param {any} data
   */
  [SIGNAL](callId, data) {
    this.#sendSignal({ type: "signal", call: callId, data });
  }

  /**
   * A signal for member connection toConn of a room, sent or held as {@link CallMesh#[SIGNAL]}.
   * @param {string} room @param {string} toConn @param {any} data
   */
  [ROOM_SIGNAL](room, toConn, data) {
    this.#sendSignal({ type: "signal", room, to_conn: toConn, data });
  }

  /** @param {Envelope} env */
  #sendSignal(env) {
    if (this.#state === "open") this.#send(env);
    else if (this.#state === "reconnecting") this.#outbox.push(env);
  }

  /** Drops an ended call, a room left or an ended ring from the live sets. @param {Call|Room|RoomRing} item */
  [FORGET](item) {
    if (item instanceof Room) {
      if (this.#rooms.get(item.id) === item) this.#rooms.delete(item.id);
    } else if (item instanceof RoomRing) {
      this.#rings.delete(item.id);
    } else {
      this.#calls.delete(item.id);
    }
  }

  /**
   * The Room of id, created (state `"joining"`, sending stream) if this mesh has none yet.
   * @param {string} id @param {MediaStream|null} stream
   */
  [ENTER](id, stream) {
    let room = this.#rooms.get(id);
    if (!room) {
      room = new Room(this, id, stream);
      this.#rooms.set(id, room);
    }
    return room;
  }

  /**
   * Registers a new ring (one the server acked, or an `incoming`).
   * @param {{id: string, room: string, peer: string, direction: "outgoing"|"incoming", data?: any}} init
   */
  [RING](init) {
    const ring = new RoomRing(this, init);
    this.#rings.set(ring.id, ring);
    return ring;
  }

  /**
   * Call callId moved into room roomId (PROTOCOL.md §14.7): its peer connection becomes the
   * room's connection to the other party, and the Call ends with reason "moved". Either of the
   * server's two frames for it (`joined{call}`, `ended{moved}`) may come first; the first does it.
   * @param {string} callId @param {string} roomId
   */
  #moveCall(callId, roomId) {
    const call = this.#calls.get(callId);
    if (!call || call.state !== "active") return;
    const fresh = !this.#rooms.has(roomId);
    const room = this[ENTER](roomId, call.localStream);
    room[ADOPT](call.peer, call[DETACH]());
    call[END]("moved", false, room);
    if (fresh) this.#emit("room", room);
  }

  async #dial() {
    let jwt;
    try {
      jwt = await this.#getToken();
    } catch (err) {
      // A fixed token that has expired will never work again: give up instead of looping.
      this.#dialFailed(err instanceof Error ? err : new Error(String(err)), 0, typeof this.#token === "string");
      return;
    }
    if (this.#state === "closed") return; // close() while the token was fetched
    /** @type {WebSocket} */
    let ws;
    try {
      const url = new URL(this.#url, globalThis.location?.href);
      if (url.protocol === "http:") url.protocol = "ws:";
      if (url.protocol === "https:") url.protocol = "wss:";
      url.searchParams.set("access_token", jwt);
      if (this.#welcome?.resume) url.searchParams.set("resume", this.#welcome.resume);
      ws = new WebSocket(url);
    } catch (err) {
      this.#dialFailed(err instanceof Error ? err : new Error(String(err)), 0);
      return;
    }
    this.#jwt = jwt;
    this.#ws = ws;
    ws.onmessage = (e) => { if (ws === this.#ws) this.#onFrame(e.data); };
    ws.onclose = (e) => { if (ws === this.#ws) this.#onDrop(e.code, e.reason); };
    this.#timers.welcome = setTimeout(() => {
      if (ws === this.#ws) this.#abandon(ws, "no welcome");
    }, WELCOME_TIMEOUT_MS);
  }

  async #getToken() {
    const t = typeof this.#token === "function" ? await this.#token({ fetch: this.#fetch }) : this.#token;
    if (typeof t !== "string" || !t) throw new CallMeshError("unauthorized", "the token function returned no token");
    const exp = jwtExpiry(t);
    if (typeof this.#token === "string" && exp !== null && exp < Date.now()) {
      throw new CallMeshError("unauthorized", "the token has expired");
    }
    return t;
  }

  /**
   * Gives up on a socket that is alive but useless (no welcome, no pong): treat it as a drop.
   * @param {WebSocket} ws @param {string} why
   */
  #abandon(ws, why) {
    this.#ws = null;
    ws.close(4000, why);
    this.#onDrop(1006, why);
  }

  /** @param {number} code @param {string} reason */
  #onDrop(code, reason) {
    this.#ws = null;
    this.#stopTimers();
    this.#failPending("disconnected", `the connection closed (${code})`);
    this.#dialFailed(new CallMeshError("connect_failed", `the connection closed (${code}${reason ? " " + reason : ""})`), code);
  }

  /**
   * What to do after a failed dial or a drop: reconnect later, or close for good.
   * @param {Error} err @param {number} code the close code @param {boolean} [giveUp]
   */
  #dialFailed(err, code, giveUp = false) {
    if (this.#state === "closed") return;
    const final = giveUp || !this.#everOpen || !this.#reconnect || FINAL_CLOSE_CODES.has(code);
    if (final) {
      this.#endAll();
      this.#outbox = [];
      this.#ready?.reject(err);
      this.#ready = null;
      this.#setState("closed");
      return;
    }
    if (!this.#ready) {
      this.#ready = deferred();
      this.#ready.promise.catch(() => {}); // nobody may be waiting
    }
    if (this.#state !== "reconnecting") {
      this.#setState("reconnecting");
      // Past the resume grace the server has ended our calls: end them here too.
      const grace = (this.#welcome?.resume_grace_ms ?? 10_000) + 1_000;
      this.#timers.grace = setTimeout(() => this.#endAll(), grace);
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#attempt++);
    // 1008 (policy) asks not to reconnect in a loop: only at the slowest pace.
    const delay = code === 1008 ? BACKOFF_MAX_MS : Math.max(BACKOFF_MIN_MS, base * (0.5 + Math.random() / 2));
    this.#timers.retry = setTimeout(() => this.#dial(), delay);
  }

  /** Ends every call, room and ring here: the session is gone. */
  #endAll() {
    for (const call of this.#calls.values()) call[END]("disconnected", true);
    for (const room of this.#rooms.values()) room[END]("disconnected", true);
    for (const ring of this.#rings.values()) ring[END]("disconnected", true);
  }

  /** @param {string} text */
  #onFrame(text) {
    /** @type {Envelope} */
    let env;
    try {
      env = JSON.parse(text);
    } catch {
      return;
    }
    switch (env.type) {
      case "welcome":
        this.#onWelcome(env.data);
        return;
      case "ack":
      case "pong":
        this.#settle(env, null);
        return;
      case "error": {
        const err = new CallMeshError(env.code ?? "internal", env.message, env.id);
        this.#settle(env, err);
        this.#emit("error", { code: err.code, message: env.message ?? "", id: env.id });
        return;
      }
      case "expiring": // the token runs out soon (close 4002): refresh it now
        clearTimeout(this.#timers.refresh);
        this.#refresh();
        this.#emit("expiring", env.data ?? {});
        return;
      case "goaway": { // the gateway drains: after the delay it asks for, resume elsewhere
        const ws = this.#ws;
        const ms = Math.min(Math.max(Number(env.data?.reconnect_ms) || 0, 0), 30_000);
        clearTimeout(this.#timers.goaway);
        this.#timers.goaway = setTimeout(() => { if (ws && ws === this.#ws) this.#abandon(ws, "goaway"); }, ms);
        return;
      }
      case "incoming": {
        if (!env.call || this.#calls.has(env.call) || this.#rings.has(env.call)) return;
        if (env.room !== undefined) { // a ring into a room
          const ring = this[RING]({ id: env.call, room: env.room, peer: env.from ?? "", direction: "incoming", data: env.data });
          this.#emit("roomring", ring);
          return;
        }
        const call = new Call(this, { id: env.call, peer: env.from ?? "", role: "callee", state: "incoming", data: env.data });
        this.#calls.set(call.id, call);
        this.#emit("incoming", call);
        return;
      }
      case "joined":
        if (env.call && env.room !== undefined) this.#moveCall(env.call, env.room);
      // falls through
      case "member_joined":
      case "member_left":
      case "locked":
      case "unlocked":
        if (env.room !== undefined) this.#rooms.get(env.room)?.[RECEIVE](env);
        return;
      case "signal":
        if (env.room !== undefined && !env.call) {
          this.#rooms.get(env.room)?.[RECEIVE](env);
          return;
        }
        break;
      case "ended":
        if (env.reason === "moved" && env.call && env.room !== undefined) {
          this.#moveCall(env.call, env.room); // a call that moved already, or not ours: nothing to do
          return;
        }
        break;
    }
    // ringing, accepted, signal, ended: for a known call or ring, else ignored
    if (env.call) (this.#calls.get(env.call) ?? this.#rings.get(env.call))?.[RECEIVE](env);
  }

  /** @param {Welcome} data */
  #onWelcome(data) {
    clearTimeout(this.#timers.welcome);
    clearTimeout(this.#timers.grace);
    const live = new Set(data.resumed ? (data.calls ?? []).map((c) => c.call) : []);
    for (const call of this.#calls.values()) {
      if (!live.has(call.id)) call[END]("disconnected", true);
    }
    // Your rings into a room you are still in go on (the server lists the room, not the ring).
    const rooms = new Map((data.resumed ? data.rooms ?? [] : []).map((r) => [r.room, r]));
    for (const ring of this.#rings.values()) {
      const kept = live.has(ring.id) || (ring.direction === "outgoing" && rooms.has(ring.room));
      if (!kept) ring[END]("disconnected", true);
    }
    const outbox = data.resumed ? this.#outbox : [];
    this.#outbox = [];
    this.#welcome = data;
    this.#everOpen = true;
    this.#attempt = 0;
    this.#setState("open");
    for (const env of outbox) this.#send(env);
    // The rooms the server kept for this session (PROTOCOL.md §14.11); a fresh session has none.
    for (const room of this.#rooms.values()) room[RESUME](rooms.get(room.id));
    for (const id of rooms.keys()) {
      // A room this client gave up on while the connection was down (a join that seemed to fail).
      if (!this.#rooms.has(id)) this.request("leave", { room: id }).catch(() => {});
    }
    this.#timers.ping = setInterval(() => this.#ping(), PING_INTERVAL_MS);
    this.#scheduleRefresh();
    this.#emit("welcome", data);
    this.#ready?.resolve(data);
    this.#ready = null;
  }

  #ping() {
    const ws = this.#ws;
    this.#request("ping", {}, PING_TIMEOUT_MS).catch((err) => {
      if (err.code === "timeout" && ws && ws === this.#ws) this.#abandon(ws, "no pong");
    });
  }

  #scheduleRefresh() {
    clearTimeout(this.#timers.refresh);
    if (typeof this.#token !== "function") return; // a fixed token cannot be renewed
    const exp = jwtExpiry(this.#jwt);
    if (exp === null) return;
    const left = exp - Date.now();
    const delay = Math.min(2 ** 31 - 1, Math.max(5_000, left - REFRESH_BEFORE_MS, left / 2));
    this.#timers.refresh = setTimeout(() => this.#refresh(), delay);
  }

  async #refresh() {
    if (this.#refreshing) return; // the refresh under way reschedules
    this.#refreshing = true;
    try {
      const jwt = await this.#getToken();
      if (jwt === this.#jwt) return; // nothing new to send; the token function decides
      await this.#request("refresh", { data: { token: jwt } }, REQUEST_TIMEOUT_MS);
      this.#jwt = jwt;
    } catch (/** @type {any} */ err) {
      // A refusal by the server was already emitted as "error"; report the client's own failures.
      const own = !(err instanceof CallMeshError) || CLIENT_CODES.has(err.code);
      if (own && this.#state === "open") {
        this.#emit("error", { code: err?.code ?? "refresh_failed", message: String(err?.message ?? err), id: err?.id });
      }
    } finally {
      this.#refreshing = false;
    }
    if (this.#state === "open") this.#scheduleRefresh();
  }

  /** @param {Envelope} env @param {CallMeshError|null} err */
  #settle(env, err) {
    const p = env.id === undefined ? undefined : this.#pending.get(env.id);
    if (!p) return;
    this.#pending.delete(/** @type {string} */ (env.id));
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(env);
  }

  /** @param {string} code @param {string} message */
  #failPending(code, message) {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new CallMeshError(code, message, id));
    }
    this.#pending.clear();
  }

  #stopTimers() {
    clearTimeout(this.#timers.retry);
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.refresh);
    clearTimeout(this.#timers.welcome);
    clearTimeout(this.#timers.goaway);
    // The grace timer runs on while reconnecting; it stops on welcome and on "closed".
  }

  /** @param {MeshState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    if (state === "closed") clearTimeout(this.#timers.grace);
    this.#emit("state", state);
  }

  /** @param {string} type @param {any} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * One call, made by {@link CallMesh#call} or announced by its `"incoming"` event; never
 * constructed by you.
 *
 * Lifecycle: a caller's call goes `"calling"` → `"ringing"` → `"active"`; a callee's goes
 * `"incoming"` → `"active"`; either may end (`"ended"`, with {@link Call#reason}) at any time.
 * The caller creates its RTCPeerConnection when the callee accepts, the callee in
 * {@link Call#accept}; signals are sent only once the call is accepted, and queued before.
 *
 * Events (all `CustomEvent`s):
 * - `"state"`: detail {@link CallState};
 * - `"ringing"`: the callee's devices ring (caller only);
 * - `"accepted"`: the call is answered, media negotiation starts (`state` is `"active"`);
 * - `"ended"`: detail `{reason, local, room?}`: {@link EndReason}, and whether this side ended
 *   it; with reason `"moved"`, `room` is the {@link Room} the call became (its peer connection
 *   goes on there, PROTOCOL.md §14.7);
 * - `"track"`: detail RTCTrackEvent, a remote track arrived;
 * - `"remotestream"`: detail MediaStream, the remote stream (one per call) gained a track.
 */
export class Call extends EventTarget {
  #mesh;
  #id;
  #peer;
  #role;
  /** @type {CallState} */
  #state;
  /** @type {EndReason|null} */
  #reason = null;
  /** @type {PeerLink|null} */
  #link = null;
  /** @type {RTCPeerConnection|null} the closed one, after the call ended */
  #closedPC = null;
  #data;
  /** @type {MediaStream|null} */
  #stream;

  #canSignal = false; // the call is accepted for this connection: signals may go out
  /** @type {any[]} */
  #queue = []; // signals made before that
  /** @type {Set<string>} ids of the signals received, to drop repeats after a resume */
  #signalIDs = new Set();
  #accepting = false;
  #raceTimer = 0;

  /**
   * @param {CallMesh} mesh
   * @param {{id: string, peer: string, role: "caller"|"callee", state: CallState, stream?: MediaStream|null, data?: any}} init
   * @hideconstructor
   */
  constructor(mesh, { id, peer, role, state, stream = null, data }) {
    super();
    this.#mesh = mesh;
    this.#id = id;
    this.#peer = peer;
    this.#role = role;
    this.#state = state;
    this.#stream = stream;
    this.#data = data;
  }

  /** The call id, assigned by the server. @type {string} */
  get id() { return this.#id; }

  /** The other party's user id. @type {string} */
  get peer() { return this.#peer; }

  /** Whether you made the call or receive it. @type {"caller"|"callee"} */
  get role() { return this.#role; }

  /** @type {CallState} */
  get state() { return this.#state; }

  /** Why the call ended, once `state` is `"ended"`; else null. @type {EndReason|null} */
  get reason() { return this.#reason; }

  /**
   * The peer connection: null until the call is accepted; closed after it ended (or, after it
   * moved into a room, the room's). @type {RTCPeerConnection|null}
   */
  get pc() { return this.#link?.pc ?? this.#closedPC; }

  /** Perfect negotiation's politeness: the callee is polite. @type {boolean} */
  get polite() { return this.#role === "callee"; }

  /** The invite's `data` (callee), or undefined. @type {any} */
  get data() { return this.#data; }

  /** The stream you send (as given to call, accept or setStream). @type {MediaStream|null} */
  get localStream() { return this.#stream; }

  /** The remote stream, once a remote track arrived. @type {MediaStream|null} */
  get remoteStream() { return this.#link?.remote ?? null; }

  /**
   * Answers an incoming call (callee only): creates the RTCPeerConnection with your tracks, sends
   * `accept`, and resolves after its `ack` (the call is then `"active"`). The caller sends the
   * first offer. If another device answered first, it rejects (`invalid_state`) and the call
   * ends (`answered_elsewhere`, as the server says).
   * @param {object} [options]
   * @param {MediaStream|null} [options.stream] the media to send (yours: the Call never stops it)
   * @returns {Promise<void>}
   */
  async accept({ stream = null } = {}) {
    if (this.#state !== "incoming" || this.#accepting) {
      throw new CallMeshError("invalid_state", `cannot accept a call that is ${this.#accepting ? "being accepted" : this.#state}`);
    }
    this.#accepting = true;
    this.#stream = stream;
    this.#createLink();
    try {
      await this.#mesh.request("accept", { call: this.#id });
    } catch (/** @type {any} */ err) {
      this.#accepting = false;
      if (/** @type {CallState} */ (this.#state) !== "ended") { // it may have ended meanwhile
        this.#link?.close();
        this.#link = null;
        // Lost the race, or the call is over: the server's `ended` says why; wait a little for it.
        if (err?.code === "invalid_state" || GONE_CODES.has(err?.code)) {
          this.#raceTimer = setTimeout(() => this[END]("error", false), ACCEPT_RACE_MS);
        }
      }
      throw err;
    }
    this.#accepting = false;
    this.#activate();
  }

  /**
   * Declines an incoming call (callee): every device of yours stops ringing, the caller hears
   * `rejected`. The call ends here at once. A no-op unless the call is `"incoming"`.
   * @returns {Promise<void>}
   */
  async reject() {
    if (this.#state !== "incoming") return;
    this[END]("rejected", true);
    await this.#mesh.request("reject", { call: this.#id }).catch((err) => {
      // Our own accept got there first (hangup during accept): the call is answered, so hang up.
      if (err?.code === "invalid_state") return this.#mesh.request("hangup", { call: this.#id }).catch(ignoreGone);
      ignoreGone(err);
    });
  }

  /**
   * Ends the call in any state: a caller's ringing call is cancelled (the callee hears
   * `cancelled`), an incoming call is rejected, an active call is hung up (the other side hears
   * `hangup`). The call ends here at once; the promise settles with the server's answer.
   * @returns {Promise<void>}
   */
  async hangup() {
    if (this.#state === "ended") return;
    if (this.#state === "incoming") return this.reject();
    this[END](this.#state === "active" ? "hangup" : "cancelled", true);
    await this.#mesh.request("hangup", { call: this.#id }).catch(ignoreGone);
  }

  /**
   * Brings a third user in (PROTOCOL.md §14.7): the call becomes room `room`, which must not
   * exist yet, and `to` is rung into it. Resolves after the server's `ack` with the ring. The
   * call then ends with reason `"moved"` and `"ended"`'s `detail.room` is the new {@link Room},
   * where this call's peer connection goes on as the connection to the other party.
   * @param {string} to the user to ring in
   * @param {object} options
   * @param {string} options.room the new room's id
   * @param {any} [options.data] the ring's data; `{invite_only: false}` makes the room open to
   *   every user whose token grants it (it is invite-only otherwise)
   * @returns {Promise<RoomRing>} rejects with a {@link CallMeshError} (`invalid_state`: the call
   *   is not active or the room exists; `forbidden`: your token does not grant the room; …)
   */
  async invite(to, { room, data } = /** @type {any} */ ({})) {
    if (this.#state !== "active") throw new CallMeshError("invalid_state", `cannot invite into a call that is ${this.#state}`);
    /** @type {Record<string, any>} */
    const fields = { room, to, call: this.#id };
    if (data !== undefined) fields.data = data;
    const ack = await this.#mesh.request("invite", fields);
    return this.#mesh[RING]({ id: /** @type {string} */ (ack.call), room, peer: to, direction: "outgoing" });
  }

  /**
   * Changes the media you send: camera on/off, screen share, another device. Each track of
   * `stream` goes on a sender of its kind (`replaceTrack` where one exists, a reused or new
   * transceiver otherwise); a sender whose kind is missing from `stream` stops sending. Whatever
   * needs renegotiation triggers `negotiationneeded`, and perfect negotiation sends a new offer
   * from whichever side. Before the call is accepted it only records the stream.
   * @param {MediaStream|null} stream the new outgoing media (yours: the Call never stops a track)
   * @returns {Promise<void>}
   */
  async setStream(stream) {
    this.#stream = stream ?? null;
    try {
      await this.#link?.setStream(this.#stream);
    } catch (err) {
      if (this.#state !== "ended") throw err; // a call that ended meanwhile has nothing to send
    }
  }

  // ---- internals ----

  /** A frame for this call from the mesh: ringing, accepted, signal or ended. @param {Envelope} env */
  [RECEIVE](env) {
    switch (env.type) {
      case "ringing":
        if (this.#state === "calling") {
          this.#setState("ringing");
          this.#emit("ringing", undefined);
        }
        return;
      case "accepted":
        this.#activate();
        return;
      case "signal":
        // After a resume the server may send a signal again, with the same id: drop the repeat.
        if (env.id && seenBefore(this.#signalIDs, env.id)) return;
        // A relayed signal proves the call is accepted, even if `accepted` has not arrived yet.
        if (this.#role === "caller") this.#activate();
        this.#link?.receive(env.data);
        return;
      case "ended":
        this[END](env.reason || "error", false);
    }
  }

  /** The call is accepted for this connection: signals may flow, the caller starts negotiating. */
  #activate() {
    if (this.#state === "ended" || this.#state === "active") return;
    if (this.#role === "callee" && !this.#link) return; // not answered on this connection
    this.#canSignal = true;
    for (const data of this.#queue.splice(0)) this.#mesh[SIGNAL](this.#id, data);
    if (!this.#link) this.#createLink();
    this.#setState("active");
    this.#emit("accepted", undefined);
  }

  #createLink() {
    // The caller makes the first offer (PROTOCOL.md §11); the callee is polite.
    this.#link = new PeerLink({
      rtc: this.#mesh.rtcConfiguration,
      polite: this.polite,
      offerer: !this.polite,
      stream: this.#stream,
      label: `call ${this.#id}`,
      send: (data) => this.#signal(data),
      onTrack: (ev, remote, added) => {
        this.#emit("track", ev);
        if (added) this.#emit("remotestream", remote);
      },
    });
  }

  /** @param {any} data */
  #signal(data) {
    if (this.#state === "ended") return;
    if (this.#canSignal) this.#mesh[SIGNAL](this.#id, data);
    else this.#queue.push(data);
  }

  /**
   * Hands the peer connection over to a room (the call moved into it) and forgets it here.
   * @returns {PeerLink|null}
   */
  [DETACH]() {
    const link = this.#link;
    this.#link = null;
    this.#closedPC = link?.pc ?? null;
    return link;
  }

  /**
   * Ends the call here: closes the peer connection (never stopping your tracks; a call that
   * moved into a room has handed it over), then "state" and "ended". Idempotent.
   * @param {EndReason} reason @param {boolean} local @param {Room} [room] the room it moved into
   */
  [END](reason, local, room) {
    if (this.#state === "ended") return;
    clearTimeout(this.#raceTimer);
    this.#reason = reason;
    this.#canSignal = false;
    this.#queue = [];
    if (this.#link) {
      this.#link.close();
      this.#closedPC = this.#link.pc;
    }
    this.#mesh[FORGET](this);
    this.#setState("ended");
    this.#emit("ended", room ? { reason, local, room } : { reason, local });
  }

  /** @param {CallState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  /** @param {string} type @param {any} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * One RTCPeerConnection driven by the W3C "perfect negotiation" pattern
 * (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example): the engine of a {@link Call}
 * and of each {@link RoomMember}. It buffers remote ICE candidates that come before a remote
 * description, handles the incoming signals one at a time, and restarts ICE when it fails.
 * @private
 */
class PeerLink {
  /** @type {RTCPeerConnection} */
  pc;
  /** Sends one signal (`{description}` or `{candidate}`) to the other side. @type {(data: any) => void} */
  send;
  /** Called for every remote track. @type {(ev: RTCTrackEvent, remote: MediaStream, added: boolean) => void} */
  onTrack;
  /** Every remote track, once one arrived. @type {MediaStream|null} */
  remote = null;

  #polite;
  #offerer;
  /** @type {MediaStream|null} */
  #stream;
  #label;
  #makingOffer = false;
  #ignoreOffer = false;
  #isSettingRemoteAnswerPending = false;
  #negotiated = false; // a remote description was applied once: the non-offerer may offer from now on
  /** @type {RTCIceCandidateInit[]} */
  #candidates = []; // remote candidates that came before a remote description
  #inbox = Promise.resolve(); // incoming signals, handled one at a time
  #media = Promise.resolve(); // setStream calls, applied one at a time

  /**
   * @param {object} init
   * @param {RTCConfiguration} init.rtc ICE servers and transport policy (CallMesh.rtcConfiguration)
   * @param {boolean} init.polite perfect negotiation's polite side: yields when offers collide
   * @param {boolean} init.offerer this side makes the first offer; the other waits for it
   * @param {MediaStream|null} init.stream the media to send
   * @param {string} init.label what to call it in console warnings
   * @param {(data: any) => void} init.send
   * @param {(ev: RTCTrackEvent, remote: MediaStream, added: boolean) => void} init.onTrack
   */
  constructor({ rtc, polite, offerer, stream, label, send, onTrack }) {
    this.#polite = polite;
    this.#offerer = offerer;
    this.#stream = stream;
    this.#label = label;
    this.send = send;
    this.onTrack = onTrack;
    const pc = (this.pc = new RTCPeerConnection(rtc));
    pc.onnegotiationneeded = async () => {
      if (!this.#offerer && !this.#negotiated) return; // the first offer is the other side's
      // An offer under way (a repair's) covers it; back in "stable", the browser asks again if need be.
      if (this.#makingOffer) return;
      try {
        this.#makingOffer = true;
        await pc.setLocalDescription();
        this.send({ description: pc.localDescription });
      } catch (err) {
        if (pc.signalingState !== "closed") console.warn(`callmesh: offer failed (${this.#label})`, err);
      } finally {
        this.#makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.send({ candidate: candidate.toJSON() });
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === "failed") pc.restartIce();
    };
    pc.ontrack = (ev) => {
      const remote = (this.remote ??= new MediaStream());
      const added = !remote.getTrackById(ev.track.id);
      if (added) remote.addTrack(ev.track);
      this.onTrack(ev, remote, added);
    };
    if (stream) {
      for (const track of stream.getTracks()) pc.addTrack(track, stream);
    }
    if (offerer) {
      // The offer always carries audio and video, so the other side can send what this one does not.
      for (const kind of ["audio", "video"]) {
        if (!pc.getTransceivers().some((t) => kindOf(t) === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  /** Perfect negotiation's politeness. @type {boolean} */
  get polite() { return this.#polite; }

  /** Handles a signal from the other side, after the ones before it. @param {any} data */
  receive(data) {
    this.#inbox = this.#inbox
      .then(() => this.#onSignal(data))
      .catch((err) => console.warn(`callmesh: signal for ${this.#label}`, err));
  }

  /**
   * Sends stream instead of what was sent before (see {@link Call#setStream}); changes are
   * applied one at a time, each with the latest stream.
   * @param {MediaStream|null} stream
   * @returns {Promise<void>}
   */
  setStream(stream) {
    this.#stream = stream;
    const run = this.#media.then(() => applyStream(this.pc, this.#stream));
    this.#media = run.catch(() => {});
    return run;
  }

  /** Whether the pair is negotiated and its media connected. @type {boolean} */
  get healthy() {
    const pc = this.pc;
    return pc.signalingState === "stable" && (pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed");
  }

  /**
   * Mends the pair after signals were lost (a gateway died with some, PROTOCOL.md §14.11):
   * unless it is negotiated and connected, sends a new offer with an ICE restart, whichever
   * side made the first, rolling back an offer that was never answered. Both sides may do it
   * at once: perfect negotiation settles the collision.
   */
  repair() {
    this.#inbox = this.#inbox
      .then(async () => {
        const pc = this.pc;
        if (pc.signalingState === "closed" || this.healthy) return;
        this.#offerer = true;
        this.#makingOffer = true; // from here: a rollback makes the browser ask for an offer too
        try {
          if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
          if (pc.signalingState !== "stable") return;
          pc.restartIce();
          await pc.setLocalDescription();
          this.send({ description: pc.localDescription });
        } finally {
          this.#makingOffer = false;
        }
      })
      .catch((err) => console.warn(`callmesh: repair of ${this.#label}`, err));
  }

  close() {
    this.#candidates = [];
    this.pc.close();
  }

  /** @param {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}} data */
  async #onSignal(data) {
    const pc = this.pc;
    if (pc.signalingState === "closed" || !data || typeof data !== "object") return;
    const { description, candidate } = data;
    if (description) {
      const readyForOffer = !this.#makingOffer && (pc.signalingState === "stable" || this.#isSettingRemoteAnswerPending);
      const offerCollision = description.type === "offer" && !readyForOffer;
      this.#ignoreOffer = !this.#polite && offerCollision;
      if (this.#ignoreOffer) return;
      this.#isSettingRemoteAnswerPending = description.type === "answer";
      try {
        await pc.setRemoteDescription(description); // the polite side rolls its own offer back here
      } finally {
        this.#isSettingRemoteAnswerPending = false;
      }
      this.#negotiated = true;
      if (description.type === "offer") {
        await pc.setLocalDescription();
        this.send({ description: pc.localDescription });
      }
      for (const c of this.#candidates.splice(0)) {
        await pc.addIceCandidate(c).catch((err) => console.warn("callmesh: early candidate", err));
      }
    } else if (candidate) {
      if (!pc.remoteDescription) {
        this.#candidates.push(candidate);
        return;
      }
      try {
        await pc.addIceCandidate(candidate);
      } catch (err) {
        if (!this.#ignoreOffer) throw err; // candidates of an offer we ignored fail: expected
      }
    }
  }
}

/**
 * A room you are in: a full-mesh group call (PROTOCOL.md §14), made by {@link CallMesh#join} or
 * {@link RoomRing#accept}, or by a call moving into it (the mesh's `"room"` event); never
 * constructed by you.
 *
 * It keeps one RTCPeerConnection per other member connection ({@link RoomMember#pc}). The newer
 * member of each pair makes the first offer and is the polite side for renegotiation: on
 * `joined` this client offers to every member already there; for each member who comes later it
 * waits for that member's offer.
 *
 * Events (all `CustomEvent`s):
 * - `"state"`: detail {@link RoomState};
 * - `"member_joined"`: detail {@link RoomMember}, someone came in after you (those who were
 *   there before you are in {@link Room#members} when `join` resolves);
 * - `"member_left"`: detail `{member, reason}`: a member is gone, its peer connection closed;
 *   reason `"left"`, `"disconnected"` (it dropped and did not come back) or `"kicked"`;
 * - `"track"`: detail `{member, track, event}`, a remote track of member arrived;
 * - `"stream"`: detail `{member, stream}`, member's remote stream gained a track;
 * - `"mute"`: detail `{member, mute}`: member announced its {@link MuteState};
 * - `"locked"`, `"unlocked"`: detail `{from}`, a moderator locked or unlocked the room;
 * - `"left"`: detail `{reason, local}`: you are out of the room: `"left"` (your leave or
 *   close), `"kicked"`, `"disconnected"` (your session is gone), or the error code of a join that
 *   failed; `local` is true when this side did it.
 */
export class Room extends EventTarget {
  #mesh;
  #id;
  /** @type {RoomState} */
  #state = "joining";
  /** @type {string|null} */
  #reason = null;
  /** @type {MediaStream|null} */
  #stream;
  #locked = false;
  /** @type {MuteState} */
  #mute = { audio: false, video: false };
  /** @type {Map<string, RoomMember>} the other member connections, by conn, in join order */
  #members = new Map();
  /** @type {Set<string>} connections that left: their late signals are dropped */
  #gone = new Set();
  /** @type {Envelope[]} frames that came before `joined` */
  #early = [];
  /** @type {Set<string>} ids of the signals received, to drop repeats after a resume */
  #signalIDs = new Set();
  /** @type {{peer: string, link: PeerLink, queue: any[]}|null} a moved call's link, until `joined` names its conn */
  #moved = null;
  #resync = 0;
  #ready = deferred();

  /**
   * @param {CallMesh} mesh @param {string} id @param {MediaStream|null} stream
   * @hideconstructor
   */
  constructor(mesh, id, stream) {
    super();
    this.#mesh = mesh;
    this.#id = id;
    this.#stream = stream;
    this.#ready.promise.catch(() => {}); // nobody may be waiting
  }

  /** The room id. @type {string} */
  get id() { return this.#id; }

  /** @type {RoomState} */
  get state() { return this.#state; }

  /** Why you are out of the room, once `state` is `"left"`; else null. @type {string|null} */
  get reason() { return this.#reason; }

  /** The other members' connections, oldest first (empty once you left). @type {RoomMember[]} */
  get members() { return [...this.#members.values()]; }

  /** Whether a moderator locked the room (as far as this client heard). @type {boolean} */
  get locked() { return this.#locked; }

  /** The stream you send to every member. @type {MediaStream|null} */
  get localStream() { return this.#stream; }

  /** Your mute state, as announced to the members. @type {MuteState} */
  get mute() { return { ...this.#mute }; }

  /** @type {Promise<Room>} resolves once joined, rejects if it never is */
  get [READY]() { return this.#ready.promise; }

  /**
   * The member connection conn, or null.
   * @param {string} conn
   * @returns {RoomMember|null}
   */
  member(conn) {
    return this.#members.get(conn) ?? null;
  }

  /**
   * Leaves the room: every other member hears `member_left{left}`. Your peer connections close
   * here at once; the promise settles with the server's answer.
   * @returns {Promise<void>}
   */
  async leave() {
    if (this.#state === "left") return;
    this[END]("left", true);
    await this.#mesh.request("leave", { room: this.#id }).catch((err) => {
      // Not connected: if the session resumes, the mesh leaves the rooms it no longer knows.
      if (err?.code !== "disconnected") throw err;
    });
  }

  /**
   * Rings user `to` into the room: every device of theirs gets a {@link RoomRing}. Resolves after
   * the server's `ack` with the outgoing ring; its events say how it goes (`ringing`,
   * `accepted`, or `ended` with `busy`, `offline`, `rejected`, `no_answer`, `join_failed`).
   * @param {string} to the user id
   * @param {object} [options]
   * @param {any} [options.data] passed to the invited user as {@link RoomRing#data}
   * @returns {Promise<RoomRing>}
   */
  async invite(to, { data } = {}) {
    this.#check("invite");
    /** @type {Record<string, any>} */
    const fields = { room: this.#id, to };
    if (data !== undefined) fields.data = data;
    const ack = await this.#mesh.request("invite", fields);
    return this.#mesh[RING]({ id: /** @type {string} */ (ack.call), room: this.#id, peer: to, direction: "outgoing" });
  }

  /**
   * Removes member connection conn (moderators only: the token's `moderator` claim).
   * @param {string} conn
   * @returns {Promise<void>}
   */
  async kick(conn) {
    await this.#mesh.request("kick", { room: this.#id, conn });
  }

  /** Stops new members from joining, invited or not (moderators only). @returns {Promise<void>} */
  async lock() {
    await this.#mesh.request("lock", { room: this.#id });
  }

  /** Lets new members join again (moderators only). @returns {Promise<void>} */
  async unlock() {
    await this.#mesh.request("unlock", { room: this.#id });
  }

  /**
   * Changes the media you send to every member, as {@link Call#setStream} does for a call.
   * @param {MediaStream|null} stream the new outgoing media (yours: the Room never stops a track)
   * @returns {Promise<void>}
   */
  async setStream(stream) {
    this.#stream = stream ?? null;
    const links = this.#links();
    const results = await Promise.allSettled(links.map((link) => link.setStream(this.#stream)));
    const failed = results.find((r, i) => r.status === "rejected" && links[i].pc.signalingState !== "closed");
    if (failed && this.#state !== "left") throw /** @type {PromiseRejectedResult} */ (failed).reason;
  }

  /**
   * Tells every member (and every later one) your mute state, for them to show: their
   * `"mute"` event. It does not change what you send: disable or remove the tracks yourself.
   * Fields you leave out keep their value.
   * @param {Partial<MuteState>} mute
   */
  setMute({ audio, video } = {}) {
    this.#mute = { audio: audio ?? this.#mute.audio, video: video ?? this.#mute.video };
    for (const conn of this.#members.keys()) this.#sendTo(conn, { mute: this.mute });
  }

  // ---- internals ----

  /** @param {string} what */
  #check(what) {
    if (this.#state !== "joined") throw new CallMeshError("invalid_state", `cannot ${what} in a room you are ${this.#state === "left" ? "out of" : "joining"}`);
  }

  #links() {
    const links = [...this.#members.values()].map((m) => m[LINK]);
    if (this.#moved) links.push(this.#moved.link);
    return links;
  }

  /** @param {string} conn @param {any} data */
  #sendTo(conn, data) {
    if (this.#state !== "left") this.#mesh[ROOM_SIGNAL](this.#id, conn, data);
  }

  /**
   * Takes over the peer connection of a call that moved into this room, as the connection to
   * its other party; `joined` tells that party's conn.
   * @param {string} peer @param {PeerLink|null} link
   */
  [ADOPT](peer, link) {
    if (!link) return;
    if (this.#state === "left") {
      link.close();
      return;
    }
    const moved = { peer, link, queue: /** @type {any[]} */ ([]) };
    link.send = (data) => moved.queue.push(data);
    link.onTrack = () => {}; // the member, once known, takes the tracks (its stream has them all)
    this.#moved = moved;
  }

  /** A frame about this room from the mesh. @param {Envelope} env */
  [RECEIVE](env) {
    if (this.#state === "left") return;
    if (env.type === "signal" && env.id && seenBefore(this.#signalIDs, env.id)) return;
    if (env.type === "joined") {
      this.#onJoined(env.members ?? []);
      return;
    }
    if (this.#state === "joining") {
      this.#early.push(env); // it can overtake our `joined`: it comes from another gateway
      return;
    }
    this.#handle(env);
  }

  /** @param {Envelope} env */
  #handle(env) {
    const me = this.#mesh.conn;
    switch (env.type) {
      case "member_joined": {
        const m = env.member;
        if (!m || m.conn === me || this.#members.has(m.conn)) return;
        this.#emit("member_joined", this.#addMember(m.user, m.conn, true, null));
        return;
      }
      case "member_left": {
        const m = env.member;
        if (!m) return;
        if (m.conn === me) this[END](env.reason || "left", false);
        else this.#removeMember(m.conn, env.reason || "left");
        return;
      }
      case "signal":
        this.#onSignal(env);
        return;
      case "locked":
      case "unlocked":
        this.#locked = env.type === "locked";
        this.#emit(env.type, { from: env.from });
    }
  }

  /** @param {{user: string, conn: string}[]} list every member, oldest first */
  #onJoined(list) {
    const me = this.#mesh.conn;
    const mine = list.findIndex((m) => m.conn === me);
    const listed = new Set(list.map((m) => m.conn));
    const first = this.#state === "joining";
    // A repeated `joined` (a join sent again) is the truth: drop whom it does not list.
    for (const conn of [...this.#members.keys()]) {
      if (!listed.has(conn)) this.#removeMember(conn, "left");
    }
    /** @type {RoomMember[]} */
    const added = [];
    list.forEach((m, i) => {
      if (m.conn === me || this.#members.has(m.conn)) return;
      /** @type {PeerLink|null} */
      let link = null;
      if (this.#moved && m.user === this.#moved.peer) {
        link = this.#moved.link;
        const queue = this.#moved.queue;
        this.#moved = null;
        link.send = (data) => this.#sendTo(m.conn, data);
        for (const data of queue) link.send(data);
      }
      added.push(this.#addMember(m.user, m.conn, mine >= 0 && i > mine, link));
    });
    this.#order(list);
    this.#setState("joined");
    if (first) {
      this.#ready.resolve(this);
    } else {
      for (const member of added) this.#emit("member_joined", member);
    }
    for (const env of this.#early.splice(0)) this.#handle(env);
    for (const member of added) {
      const remote = member[LINK].remote;
      if (remote) this.#emit("stream", { member, stream: remote }); // a moved call's media
    }
  }

  /** Puts the members in the order of list (join order), those it does not list last. @param {{conn: string}[]} list */
  #order(list) {
    const rank = new Map(list.map((m, i) => [m.conn, i]));
    const sorted = [...this.#members.entries()].sort(([a], [b]) => (rank.get(a) ?? Infinity) - (rank.get(b) ?? Infinity));
    this.#members = new Map(sorted);
  }

  /** @param {Envelope} env a room signal */
  #onSignal(env) {
    const conn = env.from_conn;
    if (!conn || conn === this.#mesh.conn) return;
    let member = this.#members.get(conn);
    if (!member) {
      // A newer member's first signal can overtake its `member_joined` (they come by different
      // gateways); a member that left is not brought back by its late signals.
      if (this.#gone.has(conn)) return;
      member = this.#addMember(env.from ?? "", conn, true, null);
      this.#emit("member_joined", member);
    }
    const data = env.data;
    if (!data || typeof data !== "object") return;
    if (data.mute && typeof data.mute === "object") {
      member[MUTE]({ audio: !!data.mute.audio, video: !!data.mute.video });
      this.#emit("mute", { member, mute: member.mute });
    }
    if (data.description || data.candidate) member[LINK].receive(data);
  }

  /**
   * @param {string} user @param {string} conn
   * @param {boolean} newer the member is newer than this connection: it offers, this side waits
   * @param {PeerLink|null} link a moved call's peer connection, or null for a new one
   */
  #addMember(user, conn, newer, link) {
    const member = new RoomMember(user, conn);
    const l = link ?? new PeerLink({
      rtc: this.#mesh.rtcConfiguration,
      polite: !newer, // the newer member of a pair is polite and offers first
      offerer: !newer,
      stream: this.#stream,
      label: `room ${this.#id}, ${user} (${conn})`,
      send: (data) => this.#sendTo(conn, data),
      onTrack: () => {},
    });
    l.onTrack = (ev, remote, added) => {
      this.#emit("track", { member, track: ev.track, event: ev });
      if (added) this.#emit("stream", { member, stream: remote });
    };
    member[LINK] = l;
    this.#members.set(conn, member);
    this.#gone.delete(conn);
    if (this.#mute.audio || this.#mute.video) this.#sendTo(conn, { mute: this.mute });
    return member;
  }

  /** @param {string} conn @param {string} reason */
  #removeMember(conn, reason) {
    const member = this.#members.get(conn);
    if (!member) return;
    this.#members.delete(conn);
    this.#gone.add(conn);
    member[LINK].close();
    this.#emit("member_left", { member, reason });
  }

  /**
   * The session resumed (PROTOCOL.md §14.11): info is the room as the server keeps it now, or
   * undefined if this session is no longer in it. Members who joined meanwhile are added (their
   * offers follow). What was held for the session arrives next; a moment later, members no
   * longer listed whose `member_left` did not come leave as disconnected, and each pair that is
   * not negotiated and connected by then is mended with a new offer and an ICE restart (a
   * gateway that died may have taken signals with it: room signal is not replayed).
   * @param {{room: string, members: {user: string, conn: string}[]}|undefined} info
   */
  [RESUME](info) {
    if (this.#state === "left") return;
    if (!info) {
      this[END]("disconnected", false);
      return;
    }
    if (this.#state === "joining") return; // its `joined` follows
    const me = this.#mesh.conn;
    const list = info.members ?? [];
    const mine = list.findIndex((m) => m.conn === me);
    const listed = new Set(list.map((m) => m.conn));
    const stale = [...this.#members.keys()].filter((conn) => !listed.has(conn));
    list.forEach((m, i) => {
      if (m.conn !== me && !this.#members.has(m.conn) && !this.#gone.has(m.conn)) {
        this.#emit("member_joined", this.#addMember(m.user, m.conn, mine < 0 || i > mine, null));
      }
    });
    clearTimeout(this.#resync);
    this.#resync = setTimeout(() => {
      for (const conn of stale) this.#removeMember(conn, "disconnected");
      for (const member of this.#members.values()) member[LINK].repair();
    }, RESYNC_MS);
  }

  /**
   * You are out of the room: closes every peer connection (never stopping your tracks), then
   * "state" and "left". Idempotent.
   * @param {string} reason @param {boolean} local
   */
  [END](reason, local) {
    if (this.#state === "left") return;
    clearTimeout(this.#resync);
    this.#reason = reason;
    for (const link of this.#links()) link.close();
    this.#members.clear();
    this.#moved = null;
    this.#early = [];
    this.#mesh[FORGET](this);
    this.#setState("left");
    this.#ready.reject(new CallMeshError(reason, `out of room ${this.#id}`));
    this.#emit("left", { reason, local });
  }

  /** @param {RoomState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  /** @param {string} type @param {any} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Another member's connection in a {@link Room}: who, and your peer connection to it. Never
 * constructed by you; the room's events tell what changes.
 */
export class RoomMember {
  #user;
  #conn;
  /** @type {MuteState} */
  #mute = { audio: false, video: false };
  /** @type {PeerLink} */
  [LINK];

  /**
   * @param {string} user @param {string} conn
   * @hideconstructor
   */
  constructor(user, conn) {
    this.#user = user;
    this.#conn = conn;
  }

  /** The member's user id. @type {string} */
  get user() { return this.#user; }

  /** The member's connection id (a user is in a room on one connection). @type {string} */
  get conn() { return this.#conn; }

  /** Your peer connection to this member (closed once it left). @type {RTCPeerConnection} */
  get pc() { return this[LINK].pc; }

  /** Perfect negotiation's politeness on your side of the pair: you are the newer. @type {boolean} */
  get polite() { return this[LINK].polite; }

  /** What the member sends you, once a track arrived. @type {MediaStream|null} */
  get stream() { return this[LINK].remote; }

  /** The member's mute state, as it announced it. @type {MuteState} */
  get mute() { return { ...this.#mute }; }

  /** @param {MuteState} mute */
  [MUTE](mute) {
    this.#mute = mute;
  }
}

/**
 * A ring into a room (PROTOCOL.md §14.5): yours, from {@link Room#invite} or
 * {@link Call#invite}, or one to you, from the mesh's `"roomring"` event. Never constructed by
 * you.
 *
 * Events (all `CustomEvent`s):
 * - `"state"`: detail {@link RingState};
 * - `"ringing"`: the invited user's devices ring (outgoing only);
 * - `"accepted"`: detail `{from}`: the invited user joined (outgoing), or you did (incoming);
 * - `"ended"`: detail `{reason, local}`: `busy`, `offline`, `rejected`, `no_answer`,
 *   `join_failed`, `cancelled`, `answered_elsewhere`, `disconnected`, … (PROTOCOL.md §8).
 */
export class RoomRing extends EventTarget {
  #mesh;
  #id;
  #room;
  #peer;
  #direction;
  /** @type {RingState} */
  #state;
  /** @type {string|null} */
  #reason = null;
  #data;
  #accepting = false;

  /**
   * @param {CallMesh} mesh
   * @param {{id: string, room: string, peer: string, direction: "outgoing"|"incoming", data?: any}} init
   * @hideconstructor
   */
  constructor(mesh, { id, room, peer, direction, data }) {
    super();
    this.#mesh = mesh;
    this.#id = id;
    this.#room = room;
    this.#peer = peer;
    this.#direction = direction;
    this.#state = direction === "outgoing" ? "calling" : "incoming";
    this.#data = data;
  }

  /** The ring's call id. @type {string} */
  get id() { return this.#id; }

  /** The id of the room it rings into. @type {string} */
  get room() { return this.#room; }

  /** The invited user (outgoing), or who invites you (incoming). @type {string} */
  get peer() { return this.#peer; }

  /** @type {"outgoing"|"incoming"} */
  get direction() { return this.#direction; }

  /** @type {RingState} */
  get state() { return this.#state; }

  /** Why the ring ended, once `state` is `"ended"`; else null. @type {string|null} */
  get reason() { return this.#reason; }

  /** The invite's `data` (incoming), or undefined. @type {any} */
  get data() { return this.#data; }

  /**
   * Answers a ring to you: joins the room and resolves with it once `joined` arrived. Your other
   * devices stop ringing. If the room no longer admits you, it rejects with the error of a
   * refused join (`room_full`, `room_locked`, …) and the ring ends (`join_failed`).
   * @param {object} [options]
   * @param {MediaStream|null} [options.stream] the media to send to every member
   * @returns {Promise<Room>}
   */
  async accept({ stream = null } = {}) {
    if (this.#direction !== "incoming" || this.#state !== "incoming" || this.#accepting) {
      throw new CallMeshError("invalid_state", `cannot accept a ring that is ${this.#accepting ? "being accepted" : this.#state}`);
    }
    this.#accepting = true;
    const fresh = !this.#mesh.rooms.some((r) => r.id === this.#room);
    const room = this.#mesh[ENTER](this.#room, stream);
    try {
      await this.#mesh.request("accept", { call: this.#id });
    } catch (/** @type {any} */ err) {
      this.#accepting = false;
      if (fresh) room[END](err?.code ?? "error", true);
      this[END](GONE_CODES.has(err?.code) || err?.code === "invalid_state" ? "error" : "join_failed", false);
      throw err;
    }
    this.#accepting = false;
    this.#accepted(this.#mesh.user ?? "");
    return room[READY];
  }

  /** Declines a ring to you: your devices stop ringing, the inviter hears `rejected`. @returns {Promise<void>} */
  async reject() {
    if (this.#direction !== "incoming" || this.#state !== "incoming") return;
    this[END]("rejected", true);
    await this.#mesh.request("reject", { call: this.#id }).catch(ignoreGone);
  }

  /** Stops ringing: cancels your ring (the devices hear `cancelled`), or declines one to you. @returns {Promise<void>} */
  async cancel() {
    if (this.#direction === "incoming") return this.reject();
    if (this.#state !== "calling" && this.#state !== "ringing") return;
    this[END]("cancelled", true);
    await this.#mesh.request("hangup", { call: this.#id }).catch(ignoreGone);
  }

  /** ringing, accepted or ended for this ring. @param {Envelope} env */
  [RECEIVE](env) {
    switch (env.type) {
      case "ringing":
        if (this.#state === "calling") {
          this.#setState("ringing");
          this.#emit("ringing", undefined);
        }
        return;
      case "accepted":
        if (this.#direction === "outgoing") this.#accepted(env.from ?? this.#peer);
        return;
      case "ended":
        this[END](env.reason || "error", false);
    }
  }

  /** @param {string} from */
  #accepted(from) {
    if (this.#state === "ended" || this.#state === "accepted") return;
    this.#mesh[FORGET](this);
    this.#setState("accepted");
    this.#emit("accepted", { from });
  }

  /** @param {string} reason @param {boolean} local */
  [END](reason, local) {
    if (this.#state === "ended" || this.#state === "accepted") return;
    this.#reason = reason;
    this.#mesh[FORGET](this);
    this.#setState("ended");
    this.#emit("ended", { reason, local });
  }

  /** @param {RingState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  /** @param {string} type @param {any} detail */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The reason a call ends with when you leave (`close()`): what the other side would hear. @param {Call} call */
function leaveReason(call) {
  if (call.state === "active") return "hangup";
  return call.role === "caller" ? "cancelled" : "rejected";
}

/**
 * Puts the tracks of stream on the senders of pc (see {@link Call#setStream}).
 * @param {RTCPeerConnection} pc @param {MediaStream|null} stream
 */
async function applyStream(pc, stream) {
  if (pc.signalingState === "closed") return;
  const tracks = stream ? stream.getTracks() : [];
  const used = new Set();
  for (const track of tracks) {
    const t = pc.getTransceivers().find((t) => !used.has(t) && !isStopped(t) && kindOf(t) === track.kind);
    if (t) {
      used.add(t);
      if (t.sender.track !== track) await t.sender.replaceTrack(track);
      if (t.direction === "recvonly" || t.direction === "inactive") t.direction = "sendrecv";
    } else {
      const sender = pc.addTrack(track, /** @type {MediaStream} */ (stream));
      used.add(pc.getTransceivers().find((t) => t.sender === sender));
    }
  }
  for (const t of pc.getTransceivers()) {
    if (used.has(t) || isStopped(t)) continue;
    if (t.sender.track) await t.sender.replaceTrack(null);
    if (t.direction === "sendrecv") t.direction = "recvonly";
    else if (t.direction === "sendonly") t.direction = "inactive";
  }
}

/**
 * Whether id is in seen; adds it (keeping the newest 4096) if not. Signals come again with the
 * same id after a resume: the repeat is dropped.
 * @param {Set<string>} seen @param {string} id
 */
function seenBefore(seen, id) {
  if (seen.has(id)) return true;
  seen.add(id);
  if (seen.size > 4096) seen.delete(/** @type {string} */ (seen.values().next().value));
  return false;
}

/** @param {RTCRtpTransceiver} t */
function kindOf(t) {
  return t.receiver.track.kind;
}

/** @param {RTCRtpTransceiver} t */
function isStopped(t) {
  return t.currentDirection === "stopped" || /** @type {any} */ (t).stopped === true;
}

/**
 * A hangup or reject of a call the server no longer has for us has nothing left to do.
 * @param {any} err
 */
function ignoreGone(err) {
  if (!GONE_CODES.has(err?.code)) throw err;
}

/**
 * The `exp` claim of a JWT in milliseconds, or null. The token is not verified: the server does.
 * @param {string} jwt
 */
function jwtExpiry(jwt) {
  try {
    const b64 = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/** @returns {{promise: Promise<any>, resolve: (v: any) => void, reject: (e: any) => void}} */
function deferred() {
  /** @type {any} */
  const d = {};
  d.promise = new Promise((resolve, reject) => Object.assign(d, { resolve, reject }));
  return d;
}
