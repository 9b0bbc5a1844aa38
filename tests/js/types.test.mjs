// client.d.ts (hand-written for TypeScript users) must describe client.js truthfully:
// TypeScript checks that the implementation module is assignable to the declared one.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const tsc = join(root, "node_modules", ".bin", "tsc");

function compile(dir) {
  const args = ["--noEmit", "--allowJs", "--strict", "--target", "ES2022", "--module", "ES2022"];
  args.push("--moduleResolution", "bundler", "--lib", "ES2022,DOM,DOM.Iterable", join(dir, "check.ts"));
  return new Promise((resolve) => {
    execFile(tsc, args, { cwd: dir }, (error, stdout, stderr) => resolve({ code: error ? error.code : 0, out: stdout + stderr }));
  });
}

test("client.js conforms to client.d.ts", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ladder-dts-"));
  try {
    // client.js is the entry point; the modules it imports sit beside it.
    const statics = join(root, "src/ladder/static");
    for (const name of await readdir(statics)) {
      if (name.endsWith(".js")) await copyFile(join(statics, name), join(dir, name === "client.js" ? "impl.js" : name));
    }
    await copyFile(join(root, "src/ladder/static/client.d.ts"), join(dir, "api.d.ts"));
    await writeFile(
      join(dir, "check.ts"),
      [
        'import * as impl from "./impl.js";',
        'import type * as api from "./api.js";',
        "export const conforms: typeof api = impl;",
        // And the declarations are usable the way the docs show.
        'import { connect, type Publication } from "./api.js";',
        'const client = connect("/ladder", { token: "alice", transports: ["sse", "longpoll"] });',
        'client.on("transport", (e) => e.old === null || e.new.length > 0);',
        'client.subscribe<{ text: string }>("room:a", (pub: Publication<{ text: string }>) => pub.data.text.length, { recent: 5 });',
        'export const n: Promise<number> = client.call<number>("add", [1, 2], { timeout: null });',
        "",
      ].join("\n"),
    );
    const { code, out } = await compile(dir);
    assert.equal(code, 0, out);
    // The check has teeth: a declaration the implementation lacks is caught.
    const declared = await readFile(join(root, "src/ladder/static/client.d.ts"), "utf8");
    await writeFile(join(dir, "api.d.ts"), `${declared}\nexport declare function missing(): void;\n`);
    const broken = await compile(dir);
    assert.notEqual(broken.code, 0);
    assert.match(broken.out, /missing/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("client.d.ts's comments sit above what they describe, and say what browser.md says", async () => {
  const declared = await readFile(join(root, "src/ladder/static/client.d.ts"), "utf8");
  const docs = await readFile(join(root, "docs/browser.md"), "utf8");
  // (the comment of Position sat above RestoredMessage, which then had two)
  const above = (name) => declared.split(`\nexport interface ${name}`)[0].trimEnd().split("\n").pop();
  assert.equal(above("Position"), "/** Where a subscription stands; pass it as `since` to resume later. */");
  assert.equal(above("RestoredMessage<T = any> {"), "/** A message a previous page left, that this client sends first (`restoredMessages`). */");
  // (the token function was said to be "called for every transport": it is called once per race)
  const token = declared.slice(declared.indexOf("Credentials for the server's `authenticate` hook"), declared.indexOf("token?:"));
  assert.doesNotMatch(token, /every transport/);
  assert.match(token.replace(/\s*\n\s*\*\s*/g, " "), /called once per race, whose rungs share the answer, and for every probe, within `openTimeout`/);
  assert.match(docs, /called once per race \(its rungs share the answer\) and for every probe, within `openTimeout`/);
});
