// An esbuild plugin for bundles whose start-up time counts (berthctl): `import … from
// "node:x"` becomes process.getBuiltinModule("node:x"), loaded on first use. Node
// builds a whole ES module namespace for an imported builtin, evaluating every
// export, and some exports are getters that load more: node:fs's `promises` pulls in
// fs/promises and readline, node:crypto's `webcrypto` all of WebCrypto. Measured: an
// imported node:crypto costs 5 ms of CPU, through getBuiltinModule 1.8 ms, and
// nothing until a command hashes something. Functions (lower-case exports) become
// wrappers that load the module when called; anything else (classes, constants) is
// read when the importing bundle starts. Wrappers drop a function's own properties
// (fs.realpath.native): this is for our own code, which does not use them.
// CommonJS dependencies' require() of a builtin gets an object that loads the module
// on its first property read (commander requires node:child_process, 4.6 ms, for a
// feature berthctl does not use); builtins that are themselves functions or classes
// (node:events, node:assert) are required as they are.
import { builtinModules, createRequire } from "node:module";
import type { Plugin } from "esbuild";

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
const require = createRequire(import.meta.url);

/** Export names that can be declared as `export const <name>`. */
function declarable(name: string): boolean {
  if (name === "default" || !/^[A-Za-z_$][\w$]*$/.test(name)) return false;
  try {
    new Function(`const ${name} = 1;`);
    return true;
  } catch {
    return false;
  }
}

export const builtinsWithoutNamespaces: Plugin = {
  name: "builtins-without-namespaces",
  setup(build) {
    build.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      if (!builtins.has(args.path)) return undefined;
      if (args.kind === "import-statement") return { path: args.path, namespace: "builtin" };
      if (args.kind === "require-call" && typeof require(args.path) === "object") return { path: args.path, namespace: "builtin-required" };
      return undefined;
    });
    build.onLoad({ filter: /.*/, namespace: "builtin-required" }, (args) => {
      const id = args.path.startsWith("node:") ? args.path : `node:${args.path}`;
      const contents = [
        "let loaded;",
        `const m = () => (loaded ??= process.getBuiltinModule(${JSON.stringify(id)}));`,
        "module.exports = new Proxy({}, {",
        "  get: (_, key) => m()[key],",
        "  has: (_, key) => key in m(),",
        "  ownKeys: () => Reflect.ownKeys(m()),",
        "  getOwnPropertyDescriptor: (_, key) => { const d = Reflect.getOwnPropertyDescriptor(m(), key); return d && { ...d, configurable: true }; },",
        "});",
      ].join("\n");
      return { contents, loader: "js" };
    });
    build.onLoad({ filter: /.*/, namespace: "builtin" }, async (args) => {
      const id = args.path.startsWith("node:") ? args.path : `node:${args.path}`;
      const real = (await import(id)) as Record<string, unknown>;
      const names = Object.keys(real).filter(declarable);
      const lazy = (name: string) => typeof real[name] === "function" && /^[a-z]/.test(name);
      // Every export is marked pure, so esbuild drops the ones the bundle never uses.
      const contents = [
        `let loaded;`,
        `const m = () => (loaded ??= process.getBuiltinModule(${JSON.stringify(id)}));`,
        "export default /* @__PURE__ */ m();",
        ...names.map((name) =>
          lazy(name)
            ? `export const ${name} = /* @__PURE__ */ ((...args) => m().${name}(...args));`
            : `export const ${name} = /* @__PURE__ */ (() => m().${name})();`,
        ),
      ].join("\n");
      return { contents, loader: "js" };
    });
  },
};
