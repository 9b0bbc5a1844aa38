// The shared conformance vectors (tests/vectors/*.json, format in tests/vectors/README.md) run
// against the browser client's core (core.js) and PeerState: the same files the Python core runs.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, test } from "node:test";

import * as core from "../../src/ladder/static/core.js";
import { LadderError } from "../../src/ladder/static/errors.js";
import { PeerState } from "../../src/ladder/static/peer.js";

const dir = new URL("../vectors/", import.meta.url);
const files = readdirSync(dir).filter((name) => name.endsWith(".json")).sort();
const documents = files.map((name) => [name, JSON.parse(readFileSync(new URL(name, dir), "utf8"))]);

/** @param {string} name */
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
/** @param {Record<string, any>} args */
const camelKeys = (args) => Object.fromEntries(Object.entries(args).map(([k, v]) => [camel(k), v]));

// PeerState predates the core and takes its arguments positionally: their names, in order.
const POSITIONAL = {
  hello: ["token", "why"], welcome: ["welcome"], submit: ["frame"], unsent: [], onAck: ["upto"],
  forgetSession: [], receive: ["frame"], ackFrame: ["every"],
};
const SUBJECTS = {
  ...Object.fromEntries(Object.entries(core).filter(([, v]) => typeof v === "function" && /^[A-Z]/.test(v.name))),
  PeerState: { create: (config) => new PeerState(config.maxQueue), positional: true },
};

function same(got, want) {
  if (want === null) return got === null || got === undefined;
  if (typeof want === "number") return typeof got === "number" && Math.abs(got - want) <= 1e-6;
  if (typeof want !== "object") return got === want;
  if (Array.isArray(want)) return Array.isArray(got) && got.length === want.length && want.every((w, i) => same(got[i], w));
  if (got === null || typeof got !== "object" || Array.isArray(got)) return false;
  const keys = Object.keys(got).filter((k) => got[k] !== undefined);
  return keys.length === Object.keys(want).length && Object.keys(want).every((k) => same(got[k], want[k]));
}

function make(subject, config) {
  const entry = SUBJECTS[subject];
  if (entry?.create) return { target: entry.create(camelKeys(config)), positional: true };
  return { target: new entry(camelKeys(config)), positional: false };
}

function run(subject, testCase) {
  const made = subject ? make(subject, testCase.config ?? {}) : null;
  testCase.steps.forEach((step, number) => {
    const args = camelKeys(step.input.args ?? {});
    if ("at" in step) args.now = step.at;
    const call = camel(step.input.call);
    let got;
    try {
      if (!made) got = core[call](args);
      else if (made.positional) got = made.target[call](...POSITIONAL[call].map((name) => args[name] ?? undefined));
      else got = made.target[call](args);
      got = got === undefined ? null : JSON.parse(JSON.stringify(got));
    } catch (error) {
      if (!(error instanceof LadderError)) throw error;
      got = { error: error.code };
    }
    if ("expect" in step) {
      assert.ok(same(got, step.expect), `step ${number} (${call}): got ${JSON.stringify(got)}, want ${JSON.stringify(step.expect)}`);
    }
    for (const [name, want] of Object.entries(step.state ?? {})) {
      const value = JSON.parse(JSON.stringify(made.target[camel(name)] ?? null));
      assert.ok(same(value, want), `step ${number}: ${name} is ${JSON.stringify(value)}, want ${JSON.stringify(want)}`);
    }
  });
}

for (const [file, document] of documents) {
  describe(`${file}: ${document.subject ?? "functions"}`, () => {
    for (const testCase of document.cases) test(testCase.name, () => run(document.subject ?? null, testCase));
  });
}

test("every decision of the core has vectors", () => {
  const called = new Set();
  for (const [, document] of documents) {
    if (document.subject) called.add(document.subject);
    for (const testCase of document.cases) for (const step of testCase.steps) called.add(camel(step.input.call));
  }
  const decisions = Object.keys(core).filter((name) => !/^[A-Z_]+$/.test(name));
  assert.deepEqual(decisions.filter((name) => !called.has(name)), []);
  assert.ok(documents.length >= 10, "the vectors are there");
});
