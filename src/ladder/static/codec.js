// @ts-check
/** JSON codec: a batch is frames joined by "\n"; bytes travel as {"$b": base64} (protocol §2). */

/** @typedef {Record<string, any>} Frame */

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** @param {string} text */
function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * @param {string} _key
 * @param {unknown} value
 */
export function tagBytes(_key, value) {
  if (value instanceof ArrayBuffer) return { $b: toBase64(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) {
    return { $b: toBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  }
  return value;
}

/**
 * @param {string} _key
 * @param {any} value
 */
export function untagBytes(_key, value) {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && typeof value.$b === "string") {
    const keys = Object.keys(value);
    if (keys.length === 1) return fromBase64(value.$b);
  }
  return value;
}

/**
 * Encode frames as one JSON batch (Uint8Array and ArrayBuffer values become `{"$b": ...}`).
 * @param {Frame[]} frames
 */
export function encodeBatch(frames) {
  return frames.map((frame) => JSON.stringify(frame, tagBytes)).join("\n");
}

const CARRIED = "null, booleans, numbers, strings, bytes (Uint8Array), arrays and plain objects";

const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** @type {[string, string]} */
const BAD_TAG = ['a {"$b": string} object whose string is not standard base64', "JSON's form of bytes: send a Uint8Array, or give the object a second key"];

/**
 * A one-key `{"$b": string}` object that every reader would take for bytes and could not
 * decode (the server refuses it, with the whole message it came in).
 * @param {any} item
 */
function badTag(item) {
  return typeof item.$b === "string" && !STANDARD_BASE64.test(item.$b) && Object.keys(item).length === 1;
}

/**
 * What is wrong with one value that JSON would silently alter (a Date turned into a string,
 * a Map into `{}`, NaN into null, a function dropped), and what to send instead; null when
 * it travels as it is. Its children are not looked at.
 * @param {unknown} item
 * @returns {[string, string] | null}
 */
function refused(item) {
  switch (typeof item) {
    case "bigint":
      return ["a BigInt", "send it as a string"];
    case "function":
      return ["a function", ""];
    case "symbol":
      return ["a symbol", ""];
    case "number":
      return Number.isFinite(item) ? null : [String(item), "not a JSON number"];
    case "object": {
      if (item === null || Array.isArray(item) || item instanceof ArrayBuffer || ArrayBuffer.isView(item)) return null;
      if (item instanceof Date) return ["a Date", "send date.toISOString() or date.getTime()"];
      const proto = Object.getPrototypeOf(item);
      if (proto === Object.prototype || proto === null) return badTag(item) ? BAD_TAG : null;
      if (typeof (/** @type {any} */ (item).toJSON) === "function") return null; // the app's own encoding
      const name = item.constructor?.name ?? "Object";
      return [`${/^[aeiou]/i.test(name) ? "an" : "a"} ${name}`, "not a plain object"];
    }
    default:
      return null;
  }
}

/** Levels of arrays and objects data may nest (protocol §2: what the server's JSON writes). */
const MAX_DEPTH = 254;

/** A string that UTF-8 can carry: no lone surrogate (orjson refuses one, with its batch). */
const LONE_SURROGATE = /[\ud800-\udfff]/u;
/** @type {(text: string) => boolean} */
const wellFormed = typeof (/** @type {any} */ ("").isWellFormed) === "function"
  ? (text) => /** @type {any} */ (text).isWellFormed()
  : (text) => !LONE_SURROGATE.test(text);

/**
 * Why `value` cannot be sent, naming its type and where it sits (only called once encoding
 * failed, so the walk costs nothing on the happy path).
 * @param {unknown} value
 * @param {string} where
 * @returns {TypeError}
 */
export function unencodable(value, where = "") {
  /** @type {Set<object>} */
  const path = new Set();
  /**
   * @param {unknown} item
   * @param {string} at
   * @returns {string | null}
   */
  const find = (item, at) => {
    const there = at ? ` at ${at.length > 80 ? `${at.slice(0, 40)}…${at.slice(-30)}` : at}` : "";
    const wrong = refused(item);
    if (wrong) return `${wrong[0]}${there}${wrong[1] ? ` (${wrong[1]})` : ""}`;
    if (typeof item === "string") return wellFormed(item) ? null : `a string with a lone surrogate${there}`;
    if (item === null || typeof item !== "object") return null;
    if (item instanceof ArrayBuffer || ArrayBuffer.isView(item)) return null;
    const name = item.constructor?.name ?? "Object";
    if (path.has(item)) return `${/^[aeiou]/i.test(name) ? "an" : "a"} ${name} that contains itself${there}`;
    if (typeof (/** @type {any} */ (item).toJSON) === "function") return null;
    if (path.size >= MAX_DEPTH) return `arrays and objects nested more than ${MAX_DEPTH} deep${there}`;
    path.add(item);
    try {
      for (const [key, child] of Object.entries(item)) {
        if (!wellFormed(key)) return `a key with a lone surrogate${there}`;
        const found = find(child, Array.isArray(item) ? `${at}[${key}]` : `${at}.${key}`);
        if (found) return found;
      }
      return null;
    } finally {
      path.delete(item);
    }
  };
  const found = find(value, where);
  return new TypeError(`cannot send ${found ?? "this value"}: Ladder messages carry ${CARRIED}`);
}

/**
 * Why a message cannot be sent: a name (`ev`, `ch`) with a lone surrogate, else its data's
 * culprit (as the Python client says it).
 * @param {Frame} frame
 * @returns {TypeError}
 */
function unsendable(frame) {
  for (const [key, value] of Object.entries(frame)) {
    if (key !== "d" && typeof value === "string" && !wellFormed(value)) {
      return new TypeError(`cannot send a string with a lone surrogate at ${key}: names are text (${JSON.stringify(value)})`);
    }
  }
  return unencodable(frame.d, "d");
}

/**
 * A replacer for one message: `tagBytes`, refusing what JSON would silently alter (see
 * `refused`), what the server could not decode (a lone surrogate, in a string or a key: its
 * whole batch refused, after the message took an id) and data nested past `MAX_DEPTH`.
 * @param {object} frame
 */
function checker(frame) {
  /** Levels of the objects written so far (the frame's is 0, its data's 1). */
  const levels = new Map([[frame, 0]]);
  /**
   * @this {any}
   * @param {string} key
   * @param {unknown} value
   */
  return function checked(key, value) {
    const original = this[key]; // (before toJSON: a Date is still a Date here)
    if (original !== undefined && refused(original)) throw new TypeError("refused");
    if (!wellFormed(key) || (typeof value === "string" && !wellFormed(value))) throw new TypeError("refused");
    const tagged = tagBytes(key, value);
    if (tagged !== null && typeof tagged === "object" && tagged !== frame) {
      const level = (levels.get(this) ?? 0) + 1;
      if (level > MAX_DEPTH) throw new TypeError("refused");
      levels.set(tagged, level);
    }
    return tagged;
  };
}

/**
 * Encode one client message, or throw a TypeError naming what cannot be sent (a BigInt, an
 * object that contains itself, a Date, a Map, NaN, a function: JSON would drop or alter them
 * without a word; a lone surrogate, data nested more than 254 deep: the server refuses
 * them). Done before the message takes an id: a numbered message that never reaches the
 * server would hold back every message after it. A property whose value is
 * `undefined` is left out, as JSON does.
 * @param {Frame} frame
 * @returns {string}
 */
export function encodeMessage(frame) {
  try {
    return JSON.stringify(frame, checker(frame));
  } catch {
    throw unsendable(frame);
  }
}

/**
 * Decode a JSON batch (`{"$b": ...}` values become Uint8Array).
 * @param {string} text
 * @returns {Frame[]}
 */
export function decodeBatch(text) {
  /** @type {Frame[]} */
  const frames = [];
  for (const line of text.split("\n")) {
    if (line.trim()) frames.push(JSON.parse(line, untagBytes));
  }
  return frames;
}
