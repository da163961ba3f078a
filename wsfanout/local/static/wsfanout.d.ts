// Types of wsfanout.js, the browser client of wsfanout's WebSocket protocol.

/** What the client needs of a socket: a WebSocket, or a test's fake. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open", listener: (event: Event) => void): void;
  addEventListener(type: "message", listener: (event: { data: string }) => void): void;
  addEventListener(type: "close", listener: (event: { code: number; reason: string }) => void): void;
}

export interface ConnectOptions {
  /** A JWT, sent as `?token=` (what the deployed authorizer reads). */
  token?: string;
  /** Rooms joined on connect and re-joined, with `since`, after every reconnect. */
  rooms?: string[];
  /** More query parameters of the connect URL. */
  query?: Record<string, string | number | boolean>;
  /** Send `{"action":"ping"}` when nothing was sent for this long (0: never). Default 240000. */
  keepaliveMs?: number;
  /** Planned reconnect (make-before-break) between 90% and 100% of this age. Default 6900000. */
  lifetimeMs?: number;
  /** First reconnect delay ceiling; doubles per attempt up to backoffMaxMs (full jitter). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Give up (and emit "close" with gaveUp) after this many failed attempts. Default Infinity. */
  maxAttempts?: number;
  /** A socket not open within this long counts as failed. Default 10000. */
  connectTimeoutMs?: number;
  /** How long a new socket may take to have its rooms re-joined. Default 10000. */
  joinTimeoutMs?: number;
  /** The old socket of a planned reconnect is still read this long after the switch (messages
   * already routed to it). Default 2000. */
  handoverMs?: number;
  /** A seq gap not filled within this long is asked for again (joinRoom since). Default 2000. */
  gapMs?: number;
  /** Asks per gap before giving up on it with a "reset" event. Default 3. */
  gapRetries?: number;
  /** Out-of-order messages held per room before giving up on a gap. Default 1000. */
  maxBuffered?: number;
  /** Frames kept while reconnecting, sent once connected again. Default 1000. */
  maxQueued?: number;
  /** How long `presence()` waits for its answer before it rejects. Default 10000. */
  requestTimeoutMs?: number;
  /** Learn the connection id with `{"action":"whoami"}` on every connect. Default true (the
   * "presence" event leaves the client's own connections out by these ids). */
  whoami?: boolean;
  /** Makes the sockets (default: `new WebSocket(url)`); tests pass a fake. */
  socket?: (url: string) => SocketLike;
}

/** A `{"type":"message"}` frame; `room` and `seq` are there for durable rooms. */
export interface Message {
  type: "message";
  room?: string;
  seq?: number;
  from: { connectionId: string; userId?: string };
  data: unknown;
  [key: string]: unknown;
}

export interface ConnectedDetail {
  connectionId: string | null;
  /** True when a planned reconnect (before the lifetime) brought this connection. */
  planned: boolean;
  /** True for the client's first connection. */
  first: boolean;
  /** From the drop (backoff included), or from the start of a planned reconnect, to the rooms
   * re-joined; null for the first connection. */
  latencyMs: number | null;
}

export interface ReconnectingDetail {
  attempt: number;
  delayMs: number;
  code: number;
  reason: string;
}

export interface ResetDetail {
  room: string;
  /** Delivery goes on after this seq. */
  seq: number;
  /** The last seq delivered before (null when none). */
  last: number | null;
  /** "history": the server's history no longer reached back; otherwise the client gave up. */
  reason: "history" | "gap not filled" | "buffer full";
}

/** Who is in a room: the answer of `client.presence(room)`. */
export interface Presence {
  room: string;
  /** One entry per user with a live connection in the room, sorted by userId. */
  users: { userId: string; connections: number }[];
  /** Every live member connection, those without a userId included. */
  connections: number;
}

/** Another connection joined or left a room the client is in (the client's own connections,
 * such as a planned reconnect's, are left out). */
export interface PresenceDetail {
  event: "join" | "leave";
  room: string;
  connectionId: string;
  /** Set when the connection has a user (an authorizer's). */
  userId?: string;
}

/** `presence()` got no answer: "timeout" (after requestTimeoutMs; e.g. the client is not in
 * the room, which the server answers with an "error" event), or "closed" (the client closed
 * first). */
export class RequestError extends Error {
  readonly name: "RequestError";
  readonly code: "timeout" | "closed";
  readonly room: string;
}

export interface CloseDetail {
  code: number;
  reason: string;
  /** The server sent `{"type":"close"}` (kicked): the client does not reconnect. */
  byServer: boolean;
  gaveUp?: boolean;
}

export interface EventMap {
  /** Each (room, seq) once, in order; messages without a seq as they come. */
  message: Message;
  /** Every new live connection (socket open, rooms joined, connection id known). */
  connected: ConnectedDetail;
  /** A connection after the first, once its rooms are re-joined (after "connected"). */
  resumed: ConnectedDetail;
  /** A connection was lost; the next attempt waits delayMs. */
  reconnecting: ReconnectingDetail;
  /** Messages of a room were missed and will not come. */
  reset: ResetDetail;
  /** Another connection joined or left one of the client's rooms. */
  presence: PresenceDetail;
  /** An `{"type":"error"}` frame. */
  error: { type: "error"; code: string; message: string };
  /** Any other frame (acks, errors; `{raw}` for one that is not JSON). */
  frame: Record<string, unknown>;
  /** The client closed for good. */
  close: CloseDetail;
}

export interface Stats {
  connects: number;
  reconnects: number;
  planned: number;
  duplicates: number;
  gaps: number;
  resets: number;
  pings: number;
}

export class Client extends EventTarget {
  constructor(url: string | URL, options?: ConnectOptions);
  /** The connect URL (token and query included). */
  readonly url: string;
  /** The current connection's id (from `whoami`); null before the first connection. */
  readonly connectionId: string | null;
  readonly connected: boolean;
  readonly rooms: string[];
  readonly stats: Stats;
  /** Listen; `fn` gets the event's detail. Returns a function that stops listening. */
  on<K extends keyof EventMap>(type: K, fn: (detail: EventMap[K]) => void): () => void;
  /** Send a frame as JSON (queued while reconnecting); joinRoom/leaveRoom update `rooms`. */
  send(frame: Record<string, unknown>): void;
  join(room: string): void;
  leave(room: string): void;
  lastSeq(room: string): number | null;
  /** Who is in `room` (only a member may ask); queued while reconnecting, and asked again on
   * the next connection when its own is lost first. Throws a TypeError for a bad room name;
   * rejects with a RequestError. */
  presence(room: string): Promise<Presence>;
  /** Close for good (no reconnect); emits "close". */
  close(code?: number, reason?: string): void;
}

/** Connect; throws a TypeError for bad arguments. */
export function connect(url: string | URL, options?: ConnectOptions): Client;
