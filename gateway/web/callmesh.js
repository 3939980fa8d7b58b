/**
 * callmesh.js: the browser client of callmesh, a signaling mesh for one-to-one WebRTC calls.
 *
 * One ES module, no dependencies, no build step. Every gateway serves it at `/callmesh.js`.
 * The wire protocol it speaks is messages/PROTOCOL.md in the callmesh repository.
 *
 * What it does for you:
 * - requests (`invite`, `accept`, `hangup`, …) are promises, matched to their `ack` / `error` by id;
 * - it reconnects after a drop (exponential backoff with jitter, 250 ms … 10 s) and resumes the
 *   session: calls go on and what was sent meanwhile arrives; on `goaway` it moves after the delay;
 * - it sends `ping` every 20 s and refreshes the JWT about 60 s before it expires;
 * - each {@link Call} drives an RTCPeerConnection with the W3C "perfect negotiation" pattern
 *   (the callee is polite), buffers early ICE candidates, and renegotiates when you change the
 *   outgoing media with {@link Call#setStream} (camera on/off, screen share).
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
 * The Call never stops a track: the streams you pass belong to you, so stop them when the call ends.
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

/** Close codes after which reconnecting is pointless (PROTOCOL.md §10). */
const FINAL_CLOSE_CODES = new Set([4001, 4004]);
/** Error codes meaning "this call is not (or no longer) yours": a hangup or reject is then done. */
const GONE_CODES = new Set(["not_found", "forbidden"]);
/** Codes of errors this client makes itself (the server never sends them as frames). */
const CLIENT_CODES = new Set(["disconnected", "timeout", "connect_failed", "unauthorized"]);

// Internal methods shared between CallMesh and Call, kept off the public API.
const RECEIVE = Symbol("receive");
const END = Symbol("end");
const SIGNAL = Symbol("signal");
const FORGET = Symbol("forget");

/**
 * `welcome.data`: what the server says about this connection (PROTOCOL.md §6).
 * @typedef {object} Welcome
 * @property {string} user your user id (the token's `sub`)
 * @property {string} conn this connection's id
 * @property {string} resume resume token for this session
 * @property {number} resume_grace_ms how long a dropped session is held
 * @property {number} ring_timeout_ms how long an unanswered call rings
 * @property {RTCIceServer[]} ice_servers for `new RTCPeerConnection({iceServers})`
 * @property {boolean} resumed whether this connection restored the previous session
 * @property {{call: string, state: string, role: string, peer: string}[]} calls live calls after a resume
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
 * A connection to a callmesh gateway: your presence, and the factory of your calls.
 *
 * Events (all `CustomEvent`s):
 * - `"welcome"`: detail {@link Welcome}, after every (re)connect;
 * - `"state"`: detail {@link MeshState};
 * - `"incoming"`: detail {@link Call}, a call rings here (state `"incoming"`);
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
  /** @type {Envelope[]} signals sent while reconnecting; sent only if the session resumes */
  #outbox = [];
  /** @type {{promise: Promise<Welcome>, resolve: Function, reject: Function}|null} */
  #ready = null;
  #everOpen = false; // a welcome arrived since connect(): from then on, drops reconnect
  #attempt = 0;
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

  /** The latest `welcome.data`. @type {Welcome|null} */
  get welcome() { return this.#welcome; }

  /** Connection state. @type {MeshState} */
  get state() { return this.#state; }

  /** The calls that have not ended. @type {Call[]} */
  get calls() { return [...this.#calls.values()]; }

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
    const env = { type: "signal", call: callId, data };
    if (this.#state === "open") this.#send(env);
    else if (this.#state === "reconnecting") this.#outbox.push(env);
  }

  /** Drops an ended call from the live set. @param {Call} call */
  [FORGET](call) {
    this.#calls.delete(call.id);
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
      for (const call of this.#calls.values()) call[END]("disconnected", true);
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
      this.#timers.grace = setTimeout(() => {
        for (const call of this.#calls.values()) call[END]("disconnected", true);
      }, grace);
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#attempt++);
    // 1008 (policy) asks not to reconnect in a loop: only at the slowest pace.
    const delay = code === 1008 ? BACKOFF_MAX_MS : Math.max(BACKOFF_MIN_MS, base * (0.5 + Math.random() / 2));
    this.#timers.retry = setTimeout(() => this.#dial(), delay);
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
      case "goaway": { // the gateway drains: after the delay it asks for, resume elsewhere
        const ws = this.#ws;
        const ms = Math.min(Math.max(Number(env.data?.reconnect_ms) || 0, 0), 30_000);
        clearTimeout(this.#timers.goaway);
        this.#timers.goaway = setTimeout(() => { if (ws && ws === this.#ws) this.#abandon(ws, "goaway"); }, ms);
        return;
      }
      case "incoming": {
        if (!env.call || this.#calls.has(env.call)) return;
        const call = new Call(this, { id: env.call, peer: env.from ?? "", role: "callee", state: "incoming", data: env.data });
        this.#calls.set(call.id, call);
        this.#emit("incoming", call);
        return;
      }
      default: // ringing, accepted, signal, ended: for a known call, else ignored
        if (env.call) this.#calls.get(env.call)?.[RECEIVE](env);
    }
  }

  /** @param {Welcome} data */
  #onWelcome(data) {
    clearTimeout(this.#timers.welcome);
    clearTimeout(this.#timers.grace);
    const live = new Set(data.resumed ? (data.calls ?? []).map((c) => c.call) : []);
    for (const call of this.#calls.values()) {
      if (!live.has(call.id)) call[END]("disconnected", true);
    }
    const outbox = data.resumed ? this.#outbox : [];
    this.#outbox = [];
    this.#welcome = data;
    this.#everOpen = true;
    this.#attempt = 0;
    this.#setState("open");
    for (const env of outbox) this.#send(env);
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
 * - `"ended"`: detail `{reason, local}`: {@link EndReason}, and whether this side ended it;
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
  /** @type {RTCPeerConnection|null} */
  #pc = null;
  #data;
  /** @type {MediaStream|null} */
  #stream;
  /** @type {MediaStream|null} */
  #remote = null;

  #canSignal = false; // the call is accepted for this connection: signals may go out
  /** @type {any[]} */
  #queue = []; // signals made before that
  /** @type {RTCIceCandidateInit[]} */
  #candidates = []; // remote candidates that came before a remote description
  #inbox = Promise.resolve(); // incoming signals, handled one at a time
  #accepting = false;
  #raceTimer = 0;
  #media = Promise.resolve(); // setStream calls, applied one at a time

  // Perfect negotiation (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example).
  #makingOffer = false;
  #ignoreOffer = false;
  #isSettingRemoteAnswerPending = false;
  #negotiated = false; // a remote description was applied once: the polite side may offer from now on

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

  /** The peer connection: null until the call is accepted; closed after it ended. @type {RTCPeerConnection|null} */
  get pc() { return this.#pc; }

  /** Perfect negotiation's politeness: the callee is polite. @type {boolean} */
  get polite() { return this.#role === "callee"; }

  /** The invite's `data` (callee), or undefined. @type {any} */
  get data() { return this.#data; }

  /** The stream you send (as given to call, accept or setStream). @type {MediaStream|null} */
  get localStream() { return this.#stream; }

  /** The remote stream, once a remote track arrived. @type {MediaStream|null} */
  get remoteStream() { return this.#remote; }

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
    this.#createPeerConnection();
    try {
      await this.#mesh.request("accept", { call: this.#id });
    } catch (/** @type {any} */ err) {
      this.#accepting = false;
      if (/** @type {CallState} */ (this.#state) !== "ended") { // it may have ended meanwhile
        this.#pc?.close();
        this.#pc = null;
        this.#negotiated = false;
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
   * Changes the media you send: camera on/off, screen share, another device. Each track of
   * `stream` goes on a sender of its kind (`replaceTrack` where one exists, a reused or new
   * transceiver otherwise); a sender whose kind is missing from `stream` stops sending. Whatever
   * needs renegotiation triggers `negotiationneeded`, and perfect negotiation sends a new offer
   * from whichever side. Before the call is accepted it only records the stream.
   * @param {MediaStream|null} stream the new outgoing media (yours: the Call never stops a track)
   * @returns {Promise<void>}
   */
  setStream(stream) {
    this.#stream = stream ?? null;
    const run = this.#media.then(() => this.#applyStream()).catch((err) => {
      if (this.#state !== "ended") throw err; // a call that ended meanwhile has nothing to send
    });
    this.#media = run.catch(() => {});
    return run;
  }

  // ---- internals ----

  /** Puts the tracks of the latest stream on the senders (see setStream). */
  async #applyStream() {
    const pc = this.#pc;
    if (!pc || pc.signalingState === "closed") return;
    const tracks = this.#stream ? this.#stream.getTracks() : [];
    const used = new Set();
    for (const track of tracks) {
      const t = pc.getTransceivers().find((t) => !used.has(t) && !isStopped(t) && kindOf(t) === track.kind);
      if (t) {
        used.add(t);
        if (t.sender.track !== track) await t.sender.replaceTrack(track);
        if (t.direction === "recvonly" || t.direction === "inactive") t.direction = "sendrecv";
      } else {
        const sender = pc.addTrack(track, /** @type {MediaStream} */ (this.#stream));
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
        // A relayed signal proves the call is accepted, even if `accepted` has not arrived yet.
        if (this.#role === "caller") this.#activate();
        this.#inbox = this.#inbox
          .then(() => this.#onSignal(env.data))
          .catch((err) => console.warn("callmesh: signal for call", this.#id, err));
        return;
      case "ended":
        this[END](env.reason || "error", false);
    }
  }

  /** The call is accepted for this connection: signals may flow, the caller starts negotiating. */
  #activate() {
    if (this.#state === "ended" || this.#state === "active") return;
    if (this.#role === "callee" && !this.#pc) return; // not answered on this connection
    this.#canSignal = true;
    for (const data of this.#queue.splice(0)) this.#mesh[SIGNAL](this.#id, data);
    if (!this.#pc) this.#createPeerConnection();
    this.#setState("active");
    this.#emit("accepted", undefined);
  }

  #createPeerConnection() {
    const pc = new RTCPeerConnection({ iceServers: this.#mesh.iceServers });
    this.#pc = pc;
    pc.onnegotiationneeded = async () => {
      // The caller makes the first offer (PROTOCOL.md §11); after it, either side may offer.
      if (this.polite && !this.#negotiated) return;
      try {
        this.#makingOffer = true;
        await pc.setLocalDescription();
        this.#signal({ description: pc.localDescription });
      } catch (err) {
        if (pc.signalingState !== "closed") console.warn("callmesh: offer failed", err);
      } finally {
        this.#makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.#signal({ candidate: candidate.toJSON() });
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === "failed") pc.restartIce();
    };
    pc.ontrack = (ev) => {
      const remote = (this.#remote ??= new MediaStream());
      const added = !remote.getTrackById(ev.track.id);
      if (added) remote.addTrack(ev.track);
      this.#emit("track", ev);
      if (added) this.#emit("remotestream", remote);
    };
    if (this.#stream) {
      for (const track of this.#stream.getTracks()) pc.addTrack(track, this.#stream);
    }
    if (!this.polite) {
      // The offer always carries audio and video, so the callee can send what the caller does not.
      for (const kind of ["audio", "video"]) {
        if (!pc.getTransceivers().some((t) => kindOf(t) === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  /** @param {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit}} data */
  async #onSignal(data) {
    const pc = this.#pc;
    if (!pc || pc.signalingState === "closed" || !data || typeof data !== "object") return;
    const { description, candidate } = data;
    if (description) {
      const readyForOffer = !this.#makingOffer && (pc.signalingState === "stable" || this.#isSettingRemoteAnswerPending);
      const offerCollision = description.type === "offer" && !readyForOffer;
      this.#ignoreOffer = !this.polite && offerCollision;
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
        this.#signal({ description: pc.localDescription });
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

  /** @param {any} data */
  #signal(data) {
    if (this.#state === "ended") return;
    if (this.#canSignal) this.#mesh[SIGNAL](this.#id, data);
    else this.#queue.push(data);
  }

  /**
   * Ends the call here: closes the peer connection (never stopping your tracks), then "state"
   * and "ended". Idempotent.
   * @param {EndReason} reason @param {boolean} local
   */
  [END](reason, local) {
    if (this.#state === "ended") return;
    clearTimeout(this.#raceTimer);
    this.#reason = reason;
    this.#canSignal = false;
    this.#queue = [];
    this.#candidates = [];
    this.#pc?.close();
    this.#mesh[FORGET](this);
    this.#setState("ended");
    this.#emit("ended", { reason, local });
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

/** The reason a call ends with when you leave (`close()`): what the other side would hear. @param {Call} call */
function leaveReason(call) {
  if (call.state === "active") return "hangup";
  return call.role === "caller" ? "cancelled" : "rejected";
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
