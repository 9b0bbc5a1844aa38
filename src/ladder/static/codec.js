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
function untagBytes(_key, value) {
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

/**
 * Why `value` cannot be sent, naming its type and where it sits (only called once
 * JSON.stringify failed, so the walk costs nothing on the happy path).
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
    if (typeof item === "bigint") return `a BigInt${at ? ` at ${at}` : ""}`;
    if (item === null || typeof item !== "object") return null;
    if (item instanceof ArrayBuffer || ArrayBuffer.isView(item)) return null;
    const name = item.constructor?.name ?? "Object";
    if (path.has(item)) return `${/^[aeiou]/i.test(name) ? "an" : "a"} ${name} that contains itself${at ? ` at ${at}` : ""}`;
    if (typeof (/** @type {any} */ (item).toJSON) === "function") return null;
    path.add(item);
    try {
      for (const [key, child] of Object.entries(item)) {
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
 * Encode one client message, or throw a TypeError naming what cannot be sent (a BigInt, an
 * object that contains itself). Done before the message takes an id: a numbered message that
 * never reaches the server would hold back every message after it.
 * @param {Frame} frame
 * @returns {string}
 */
export function encodeMessage(frame) {
  try {
    return JSON.stringify(frame, tagBytes);
  } catch {
    throw unencodable(frame.d, "d");
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
