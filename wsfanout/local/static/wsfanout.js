// wsfanout.js: the browser client of wsfanout's WebSocket protocol (docs/contracts.md, "Client
// protocol"). One ES module, no dependencies; its types are in wsfanout.d.ts beside it, and
// `wsfanout dev` serves it at /wsfanout.js.
//
//   import { connect } from "/wsfanout.js";
//   const client = connect("wss://…/prod", { token, rooms: ["lobby"] });
//   client.on("message", (m) => console.log(m.room, m.seq, m.data));
//   client.send({ action: "sendMessage", to: { room: "lobby" }, data: "hi" });
//
// What it does for a connection that has to outlive API Gateway's limits (2 hours, 10 minutes
// idle, a new connection id on every reconnect):
// - reconnects with exponential backoff and full jitter, so clients cut off by one outage do not
//   come back in step;
// - a planned reconnect before the maximum lifetime, make-before-break: the new socket is open and
//   its rooms re-joined (with `since`) before it takes over, and the old one is still read for
//   `handoverMs` before it is closed, so there is no gap;
// - keepalive: `{"action":"ping"}` when nothing was sent for `keepaliveMs`;
// - rooms re-joined after every reconnect with `since` = the last seq delivered;
// - each (room, seq) delivered once and in order: duplicates dropped, early seqs held back until
//   the gap fills, and a gap that does not fill within `gapMs` asked for again (joinRoom since).
// Messages without a seq (non-durable rooms, direct sends, broadcasts) cannot be deduplicated:
// they are delivered as they come, so one may arrive twice around a planned reconnect (at
// least once rather than lost).
//
// Presence (the chat app's rooms): `await client.presence("lobby")` asks who is in a room, and
// the "presence" event says when another connection joins or leaves one the client is in.

const DEFAULTS = Object.freeze({
  keepaliveMs: 240_000, // 4 min: well under API Gateway's 10-minute idle timeout
  lifetimeMs: 6_900_000, // 1 h 55 min: before API Gateway's 2-hour limit
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  maxAttempts: Infinity,
  connectTimeoutMs: 10_000,
  joinTimeoutMs: 10_000,
  handoverMs: 2_000, // the old socket of a planned reconnect stays this long after the switch
  gapMs: 2_000,
  gapRetries: 3,
  maxBuffered: 1_000,
  maxQueued: 1_000,
  requestTimeoutMs: 10_000,
  whoami: true,
});

const OWN_IDS = 16; // connection ids of the client's own remembered, to leave their presence out

const OPEN = 1; // WebSocket.OPEN, spelled out so that a socket factory's objects need no class

/** A request (`presence`) that got no answer: `code` "timeout", or "closed" (the client closed
 * first). */
export class RequestError extends Error {
  constructor(code, room, message) {
    super(`wsfanout: ${message}`);
    this.name = "RequestError";
    this.code = code;
    this.room = room;
  }
}

function check(condition, message) {
  if (!condition) throw new TypeError(`wsfanout: ${message}`);
}

function wsUrl(url, token, query) {
  check(typeof url === "string" || url instanceof URL, "url must be a string or a URL");
  const base = typeof location === "undefined" ? undefined : location.href;
  const parsed = new URL(String(url), base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  check(parsed.protocol === "ws:" || parsed.protocol === "wss:", `not a WebSocket URL: ${url}`);
  for (const [key, value] of Object.entries(query ?? {})) parsed.searchParams.set(key, String(value));
  if (token) parsed.searchParams.set("token", token);
  return parsed.toString();
}

function options(given) {
  check(given === undefined || (typeof given === "object" && given !== null), "options must be an object");
  const merged = { ...DEFAULTS, ...given };
  for (const name of Object.keys(DEFAULTS)) {
    if (name === "whoami") continue;
    const value = merged[name];
    check(typeof value === "number" && value >= 0 && !Number.isNaN(value), `${name} must be a number >= 0`);
  }
  check(merged.lifetimeMs > 0, "lifetimeMs must be positive");
  const rooms = merged.rooms ?? [];
  check(Array.isArray(rooms) && rooms.every((r) => typeof r === "string" && r), "rooms must be an array of room names");
  check(merged.socket === undefined || typeof merged.socket === "function", "socket must be a function (url) => WebSocket");
  return merged;
}

/** One socket and what it is doing: opening, joining (rooms re-joined, acks awaited), live. */
class Link {
  constructor(id, socket, planned) {
    this.id = id;
    this.socket = socket;
    this.planned = planned;
    this.state = "opening";
    this.waiting = new Set(); // rooms (and "$whoami") whose answer the handshake awaits
    this.connectionId = null;
    this.closeFrame = null; // the server's {"type":"close"} frame, if it sent one
    this.retired = false; // closed by us (planned handover, close())
    this.lastSent = 0;
    this.started = Date.now(); // a planned reconnect's latency runs from here
    this.timers = new Map();
  }

  timer(name, ms, fn) {
    clearTimeout(this.timers.get(name));
    this.timers.set(name, setTimeout(fn, ms));
  }

  clear() {
    for (const handle of this.timers.values()) clearTimeout(handle);
    this.timers.clear();
  }
}

/** Where a room's sequence stands. */
// A seq held in a room's pending map for the client's own message: the server does not send a
// room message back to its sender, and the `sendMessage` ack names its seq, so it is skipped.
const OWN = Symbol("own message");

class Room {
  constructor(joined) {
    this.joined = joined; // re-joined after every reconnect
    this.last = null; // highest seq delivered (all below it delivered or reset)
    this.latest = 0; // highest seq known to exist (a frame or an ack)
    this.pending = new Map(); // seq -> frame, held back until the seqs before it arrive
    this.awaitingAck = false; // a join without `since` is under way: its ack says where to start
    this.gapTimer = null;
    this.gapTries = 0;
  }
}

export class Client extends EventTarget {
  constructor(url, given = undefined) {
    super();
    const opts = options(given);
    this.url = wsUrl(url, opts.token, opts.query);
    this.options = opts;
    this.connectionId = null;
    this.stats = { connects: 0, reconnects: 0, planned: 0, duplicates: 0, gaps: 0, resets: 0, pings: 0 };
    this._rooms = new Map();
    for (const room of opts.rooms ?? []) this._rooms.set(room, new Room(true));
    this._factory = opts.socket ?? ((u) => new WebSocket(u));
    this._primary = null;
    this._next = null; // the socket of a planned reconnect, until it takes over
    this._draining = new Set(); // old sockets of planned reconnects, still read a moment
    this._attempt = 0;
    this._lostAt = null; // when the live connection was lost (a resume's latency runs from here)
    this._planFailures = 0; // planned reconnects that failed in a row (their backoff)
    this._retry = null;
    this._queue = [];
    this._requests = new Map(); // room -> presence requests awaiting their answer, oldest first
    this._ownIds = new Set(); // this client's connection ids, newest last
    this._ids = 0;
    this._ever = false;
    this._closed = false;
    // Back online: a reconnect waiting out its backoff goes now.
    this._online = () => {
      if (this._closed || this._primary !== null) return;
      clearTimeout(this._retry);
      this._primary = this._open(false);
    };
    globalThis.addEventListener?.("online", this._online);
    this._primary = this._open(false);
  }

  /** Listen to an event; `fn` gets its detail. Returns a function that stops listening. */
  on(type, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** The rooms re-joined after every reconnect. */
  get rooms() {
    return [...this._rooms].filter(([, r]) => r.joined).map(([name]) => name);
  }

  /** True while a socket is open and its rooms are joined. */
  get connected() {
    return this._primary !== null && this._primary.state === "live";
  }

  /** The last seq delivered in `room` (null when none is known). */
  lastSeq(room) {
    return this._rooms.get(room)?.last ?? null;
  }

  /**
   * Send a frame (an object, sent as JSON). While reconnecting, frames wait (at most
   * `maxQueued`) and go out once the new connection is live. `joinRoom`/`leaveRoom` frames also
   * add and remove the room from those re-joined after a reconnect.
   */
  send(frame) {
    check(typeof frame === "object" && frame !== null && !Array.isArray(frame), "send takes an object");
    check(!this._closed, "the client is closed");
    if (frame.action === "joinRoom" && typeof frame.room === "string") {
      const room = this._room(frame.room);
      room.joined = true;
      if (Number.isSafeInteger(frame.since)) room.last ??= frame.since; // replay from there
      else if (room.last !== null) frame = { ...frame, since: room.last };
      else room.awaitingAck = true;
    } else if (frame.action === "leaveRoom" && typeof frame.room === "string") {
      this._forget(frame.room);
    }
    const link = this._primary;
    if (link !== null && link.state === "live" && link.socket.readyState === OPEN) {
      this._write(link, frame);
      return;
    }
    check(this._queue.length < this.options.maxQueued, "too many frames queued while reconnecting");
    this._queue.push(frame);
  }

  /** Join `room` (and re-join it after every reconnect). */
  join(room) {
    this.send({ action: "joinRoom", room });
  }

  /** Leave `room`. */
  leave(room) {
    this.send({ action: "leaveRoom", room });
  }

  /**
   * Who is in `room`: `{room, users: [{userId, connections}], connections}`. Only a member may
   * ask; the server answers anyone else an "error" event (`forbidden`), which names no request,
   * so the promise then rejects on the timeout. While reconnecting, the question waits like
   * `send`'s frames, and one whose connection is lost before the answer is asked again on the
   * next (a reconnect never loses it).
   * @throws {TypeError} `room` is not a room name.
   * @returns {Promise} rejects with a RequestError: "timeout" after `requestTimeoutMs`, "closed"
   * when the client closed before the answer.
   */
  presence(room) {
    check(typeof room === "string" && room !== "", "presence takes a room name");
    if (this._closed) return Promise.reject(new RequestError("closed", room, "the client is closed"));
    return new Promise((resolve, reject) => {
      const request = { room, resolve, reject, link: null, timer: null };
      const ms = this.options.requestTimeoutMs;
      request.timer = setTimeout(() => {
        const why = `no presence answer for ${JSON.stringify(room)} within ${ms} ms`;
        this._settle(request, new RequestError("timeout", room, `${why} (is the client in the room?)`));
      }, ms);
      const waiting = this._requests.get(room) ?? [];
      waiting.push(request);
      this._requests.set(room, waiting);
      this._ask(request);
    });
  }

  /** Send a presence request now, or queue it until the next connection is live. */
  _ask(request) {
    const frame = { action: "presence", room: request.room };
    const link = this._primary;
    request.link = null; // set when the queue goes out
    if (link !== null && link.state === "live" && link.socket.readyState === OPEN) {
      request.link = link;
      this._write(link, frame);
    } else if (this._queue.length < this.options.maxQueued) {
      this._queue.push(frame);
    } else {
      const why = "too many frames queued while reconnecting";
      this._settle(request, new RequestError("closed", request.room, why));
    }
  }

  /** Close for good: no reconnect. Emits "close". */
  close(code = 1000, reason = "client closed") {
    if (this._closed) return;
    this._end({ code, reason, byServer: false }, reason, code);
  }

  /** Stop for good: every timer, every socket, then the "close" event. */
  _end(detail, why, code = 1000) {
    this._closed = true;
    clearTimeout(this._retry);
    globalThis.removeEventListener?.("online", this._online);
    for (const room of this._rooms.values()) clearTimeout(room.gapTimer);
    this._failRequests("the client closed");
    for (const link of [this._primary, this._next, ...this._draining]) if (link) this._retire(link, code, why);
    this._emit("close", detail);
  }

  // -- sockets ------------------------------------------------------------------------------------

  _open(planned) {
    const link = new Link(++this._ids, this._factory(this.url), planned);
    const socket = link.socket;
    socket.addEventListener("open", () => this._opened(link));
    socket.addEventListener("message", (event) => this._received(link, event.data));
    socket.addEventListener("close", (event) => this._closedLink(link, event.code, event.reason));
    link.timer("connect", this.options.connectTimeoutMs, () => {
      if (link.state === "opening") this._fail(link, 4000, "connect timed out");
    });
    return link;
  }

  _opened(link) {
    if (link.retired) return;
    link.state = "joining";
    clearTimeout(link.timers.get("connect"));
    this._keepalive(link);
    if (this.options.whoami) {
      link.waiting.add("$whoami");
      this._write(link, { action: "whoami" });
    }
    for (const [name, room] of this._rooms) {
      if (!room.joined) continue;
      link.waiting.add(name);
      this._write(link, this._joinFrame(name, room));
    }
    link.timer("join", this.options.joinTimeoutMs, () => this._joinTimedOut(link));
    if (link.waiting.size === 0) this._live(link);
  }

  _joinFrame(name, room) {
    if (room.last !== null) return { action: "joinRoom", room: name, since: room.last };
    room.awaitingAck = true;
    return { action: "joinRoom", room: name };
  }

  _answered(link, key) {
    if (link.state !== "joining" || !link.waiting.delete(key)) return;
    if (link.waiting.size === 0) this._live(link);
  }

  _joinTimedOut(link) {
    if (link.state !== "joining") return;
    if (link === this._next) {
      this._fail(link, 4001, "rooms not re-joined in time"); // the old socket carries on
    } else {
      link.waiting.clear(); // no answer to some join: go on; a gap will ask again
      this._live(link);
    }
  }

  _live(link) {
    link.state = "live";
    const timer = link.timers.get("join");
    clearTimeout(timer);
    if (link === this._next) {
      const old = this._primary;
      this._primary = link;
      this._next = null;
      this._planFailures = 0;
      if (old) this._drainAndRetire(old);
    }
    if (link !== this._primary) return;
    this._attempt = 0;
    if (link.connectionId !== null) this.connectionId = link.connectionId;
    const first = !this._ever;
    this._ever = true;
    const since = link.planned ? link.started : this._lostAt;
    const latencyMs = first || since === null ? null : Date.now() - since;
    this._lostAt = null;
    this.stats.connects += 1;
    const lifetime = this.options.lifetimeMs * (0.9 + 0.1 * Math.random()); // fleets spread out
    link.timer("lifetime", lifetime, () => this._plan(link));
    for (const frame of this._queue.splice(0)) this._write(link, frame);
    for (const waiting of this._requests.values()) for (const r of waiting) r.link ??= link;
    const detail = { connectionId: this.connectionId, planned: link.planned, first, latencyMs };
    this._emit("connected", detail);
    if (!first) this._emit("resumed", detail);
  }

  _plan(link, delayMs = 0) {
    if (this._closed || link !== this._primary || this._next !== null) return;
    if (delayMs > 0) {
      link.timer("lifetime", delayMs, () => this._plan(link));
      return;
    }
    this.stats.planned += 1;
    this._next = this._open(true);
  }

  _write(link, frame) {
    link.lastSent = Date.now();
    link.socket.send(JSON.stringify(frame));
  }

  _keepalive(link) {
    const every = this.options.keepaliveMs;
    if (!every) return;
    const tick = () => {
      if (link.socket.readyState !== OPEN) return;
      const idle = Date.now() - link.lastSent;
      if (idle >= every) {
        this.stats.pings += 1;
        this._write(link, { action: "ping" });
      }
      link.timer("keepalive", Math.max(0, link.lastSent + every - Date.now()), tick);
    };
    link.lastSent = Date.now();
    link.timer("keepalive", every, tick);
  }

  /**
   * The old socket of a planned reconnect: still read for `handoverMs`, then closed. A message
   * the server routed to it before the new connection joined is still on its way, and a
   * browser drops what a socket receives once close() was called; sequenced duplicates are
   * dropped by seq, unsequenced ones delivered (at least once rather than lost).
   */
  _drainAndRetire(link) {
    link.state = "draining";
    link.clear();
    this._draining.add(link);
    link.timer("handover", this.options.handoverMs, () => this._retire(link, 1000, "planned reconnect"));
  }

  _retire(link, code, reason) {
    link.retired = true;
    this._draining.delete(link);
    link.clear();
    try {
      link.socket.close(code, reason);
    } catch {
      // already closed, or a code the socket refuses: either way it is gone
    }
  }

  _fail(link, code, reason) {
    this._retire(link, 1000, reason);
    this._closedLink(link, code, reason, true);
  }

  _closedLink(link, code, reason, failed = false) {
    if (link.state === "closed") return;
    const wasRetired = link.retired && !failed;
    link.state = "closed";
    link.clear();
    this._reask(link);
    if (link === this._next) {
      this._next = null;
      this._planFailures += 1;
      if (!this._closed && this._primary) this._plan(this._primary, this._delay(this._planFailures));
      return;
    }
    if (link !== this._primary || wasRetired || this._closed) return;
    this._primary = null;
    if (this._ever) this._lostAt ??= Date.now();
    if (link.closeFrame !== null) {
      // The server said why it closes us (kicked): do not come straight back.
      this._end({ code, reason: link.closeFrame.reason ?? reason, byServer: true }, "closed by the server");
      return;
    }
    if (this._next !== null) {
      this._primary = this._next; // a planned reconnect under way takes over
      this._next = null;
      this._primary.planned = false;
      return;
    }
    this._reconnect(code, reason);
  }

  _delay(attempt) {
    const ceiling = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** (attempt - 1));
    return Math.random() * ceiling; // full jitter
  }

  _reconnect(code, reason) {
    this._attempt += 1;
    if (this._attempt > this.options.maxAttempts) {
      this._end({ code, reason, byServer: false, gaveUp: true }, "gave up");
      return;
    }
    const delayMs = this._delay(this._attempt);
    this.stats.reconnects += 1;
    this._emit("reconnecting", { attempt: this._attempt, delayMs, code, reason });
    this._retry = setTimeout(() => {
      if (!this._closed) this._primary = this._open(false);
    }, delayMs);
  }

  // -- frames -------------------------------------------------------------------------------------

  _received(link, text) {
    if (link.state === "closed") return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      this._emit("frame", { raw: text });
      return;
    }
    if (frame === null || typeof frame !== "object") {
      this._emit("frame", { raw: text });
      return;
    }
    switch (frame.type) {
      case "pong":
        return;
      case "message":
        this._message(frame);
        return;
      case "reset":
        this._reset(link, frame);
        break;
      case "close":
        link.closeFrame = frame;
        break;
      case "presence":
        this._presence(frame);
        return;
      case "error":
        this._emit("error", frame);
        break;
      case "ack":
        if (frame.action === "whoami" && typeof frame.connectionId === "string") {
          link.connectionId = frame.connectionId;
          this._remember(frame.connectionId);
          if (link === this._primary && link.state === "live") this.connectionId = frame.connectionId;
          this._answered(link, "$whoami");
          return;
        }
        if (frame.action === "joinRoom" && typeof frame.room === "string") this._ack(link, frame);
        if (frame.action === "sendMessage" && typeof frame.room === "string") this._own(frame);
        break;
      default:
        break;
    }
    this._emit("frame", frame);
  }

  // -- presence -----------------------------------------------------------------------------------

  _remember(connectionId) {
    this._ownIds.delete(connectionId);
    this._ownIds.add(connectionId);
    if (this._ownIds.size > OWN_IDS) this._ownIds.delete(this._ownIds.values().next().value);
  }

  /**
   * A presence frame: an event (another connection joined or left a room), or the answer to
   * the oldest question about its room. The client's own connections are left out of the
   * events: a planned reconnect's new connection joins (seen on the old socket) and its old
   * one leaves (seen on the new), while the client stays in its rooms throughout.
   */
  _presence(frame) {
    if (typeof frame.room !== "string") return;
    if (frame.event === "join" || frame.event === "leave") {
      if (this._ownIds.has(frame.connectionId)) return;
      const detail = { event: frame.event, room: frame.room, connectionId: frame.connectionId };
      if (typeof frame.userId === "string") detail.userId = frame.userId;
      this._emit("presence", detail);
      return;
    }
    const request = this._requests.get(frame.room)?.[0];
    if (request === undefined) return; // answered after its timeout
    const users = Array.isArray(frame.users) ? frame.users : [];
    const connections = Number.isSafeInteger(frame.connections) ? frame.connections : 0;
    this._settle(request, null, { room: frame.room, users, connections });
  }

  /** Resolve (or, given an error, reject) a presence request and forget it. */
  _settle(request, error, answer = undefined) {
    clearTimeout(request.timer);
    const waiting = this._requests.get(request.room) ?? [];
    const at = waiting.indexOf(request);
    if (at < 0) return;
    waiting.splice(at, 1);
    if (waiting.length === 0) this._requests.delete(request.room);
    if (error) request.reject(error);
    else request.resolve(answer);
  }

  /** Reject every request (the client closed). */
  _failRequests(why) {
    for (const waiting of [...this._requests.values()]) {
      for (const request of [...waiting]) this._settle(request, new RequestError("closed", request.room, why));
    }
  }

  /** The requests that went out on `link`, closed before their answer, go out again. */
  _reask(link) {
    if (this._closed) return;
    for (const waiting of [...this._requests.values()]) {
      for (const request of [...waiting]) if (request.link === link) this._ask(request);
    }
  }

  _room(name) {
    let room = this._rooms.get(name);
    if (room === undefined) {
      room = new Room(false);
      this._rooms.set(name, room);
    }
    return room;
  }

  _forget(name) {
    const room = this._rooms.get(name);
    if (room === undefined) return;
    clearTimeout(room.gapTimer);
    this._rooms.delete(name);
  }

  _message(frame) {
    const name = frame.room;
    const seq = frame.seq;
    if (typeof name !== "string" || !Number.isSafeInteger(seq)) {
      this._emit("message", frame); // no seq: nothing to order or deduplicate by
      return;
    }
    const room = this._room(name);
    if ((room.last !== null && seq <= room.last) || room.pending.has(seq)) {
      this.stats.duplicates += 1;
      return;
    }
    room.latest = Math.max(room.latest, seq);
    if (room.last === null) {
      if (room.awaitingAck) {
        room.pending.set(seq, frame); // the ack says which of these came before the join
        return;
      }
      room.last = seq - 1; // a room we were put in by the server: start where it starts
    }
    if (seq === room.last + 1) {
      this._deliver(room, frame);
    } else {
      room.pending.set(seq, frame);
    }
    this._drain(name, room);
  }

  _deliver(room, frame) {
    room.last = frame.seq;
    this._emit("message", frame);
  }

  _own(frame) {
    const room = this._rooms.get(frame.room);
    const seq = frame.seq;
    if (room === undefined || !Number.isSafeInteger(seq)) return;
    if ((room.last !== null && seq <= room.last) || room.pending.has(seq)) return;
    room.latest = Math.max(room.latest, seq);
    room.pending.set(seq, OWN);
    this._drain(frame.room, room);
  }

  _drain(name, room) {
    if (room.last === null) return;
    for (;;) {
      const frame = room.pending.get(room.last + 1);
      if (frame === undefined) break;
      room.pending.delete(room.last + 1);
      if (frame === OWN) room.last += 1;
      else this._deliver(room, frame);
    }
    for (const seq of room.pending.keys()) if (seq <= room.last) room.pending.delete(seq);
    if (room.last >= room.latest) {
      clearTimeout(room.gapTimer);
      room.gapTimer = null;
      room.gapTries = 0;
    } else if (room.pending.size > this.options.maxBuffered) {
      this._skip(name, room, "buffer full");
    } else if (room.gapTimer === null) {
      room.gapTimer = setTimeout(() => this._gap(name, room), this.options.gapMs);
    }
  }

  _gap(name, room) {
    room.gapTimer = null;
    if (this._rooms.get(name) !== room || room.last === null || room.last >= room.latest) return;
    const link = this._primary;
    if (link !== null && link.state === "live" && link.socket.readyState === OPEN) {
      // (while reconnecting, the re-join with `since` asks for the same: no try is spent)
      room.gapTries += 1;
      this.stats.gaps += 1;
      if (room.gapTries > this.options.gapRetries) {
        this._skip(name, room, "gap not filled");
        return;
      }
      this._write(link, { action: "joinRoom", room: name, since: room.last });
    }
    room.gapTimer = setTimeout(() => this._gap(name, room), this.options.gapMs);
  }

  /** Give up on the missing seqs: say so with a reset, and go on from the next one held. */
  _skip(name, room, reason) {
    const next = room.pending.size > 0 ? Math.min(...room.pending.keys()) : room.latest + 1;
    const last = room.last;
    room.last = next - 1;
    room.gapTries = 0;
    this.stats.resets += 1;
    this._emit("reset", { room: name, seq: room.last, last, reason });
    this._drain(name, room);
  }

  _ack(link, frame) {
    const room = this._room(frame.room);
    const seq = Number.isSafeInteger(frame.seq) ? frame.seq : null;
    if (room.awaitingAck) {
      room.awaitingAck = false;
      if (room.last === null && seq !== null) room.last = seq; // later seqs are new to us
      else if (room.last === null && room.pending.size > 0) room.last = Math.min(...room.pending.keys()) - 1;
    }
    if (seq !== null) room.latest = Math.max(room.latest, seq);
    this._drain(frame.room, room);
    this._answered(link, frame.room);
  }

  _reset(link, frame) {
    if (typeof frame.room !== "string") return;
    const room = this._room(frame.room);
    const seq = Number.isSafeInteger(frame.seq) ? frame.seq : room.latest;
    const last = room.last;
    room.awaitingAck = false;
    if (room.last === null || seq > room.last) room.last = seq;
    room.latest = Math.max(room.latest, seq);
    this.stats.resets += 1;
    this._emit("reset", { room: frame.room, seq, last, reason: "history" });
    this._drain(frame.room, room);
    this._answered(link, frame.room);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Connect to a wsfanout WebSocket API; see wsfanout.d.ts for the options and events.
 * @throws {TypeError} bad arguments (a URL that is not ws(s)/http(s), a negative option...).
 */
export function connect(url, opts = undefined) {
  return new Client(url, opts);
}
