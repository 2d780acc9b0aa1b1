// `docker commit --change`: Dockerfile instructions applied to the new image's config.
// Only the instructions that describe how to run the image are allowed, as Docker's
// commit allows: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
// WORKDIR. Anything else (RUN, COPY, …) is a 400 naming the instruction.
import { badRequest } from "../http.ts";

/** The runtime part of an image config (`config` in the OCI image config), as Docker writes it. */
export interface RunConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  OnBuild?: string[] | null;
  [key: string]: unknown;
}

/** JSON form (`["a","b"]`) when the text is a JSON list of strings, else the shell form (`/bin/sh -c text`). */
function commandForm(text: string): string[] {
  if (text.startsWith("[")) {
    try {
      const value: unknown = JSON.parse(text);
      if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value as string[];
    } catch {
      // not JSON: the shell form, as Docker's parser falls back to
    }
  }
  return ["/bin/sh", "-c", text];
}

/** Splits `a=1 b="two words" c='x'` (or a lone `KEY value` pair) into key/value pairs. */
function keyValues(text: string, instruction: string): [string, string][] {
  const words: string[] = [];
  let current = "";
  let quote: string | undefined;
  let started = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) current += text[++i];
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      started = true;
    } else if (c === "\\" && i + 1 < text.length) {
      current += text[++i];
      started = true;
    } else if (/\s/.test(c)) {
      if (started) words.push(current);
      current = "";
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (quote) throw badRequest(`${instruction}: unterminated quote in ${JSON.stringify(text)}`);
  if (started) words.push(current);
  if (words.length === 0) throw badRequest(`${instruction} requires at least one argument`);
  if (!words[0]!.includes("=")) {
    // The old `KEY value with spaces` form: one pair, the rest of the line is the value.
    const space = text.trim().search(/\s/);
    if (space < 0) throw badRequest(`${instruction} ${text.trim()}: a value is required (KEY=value or KEY value)`);
    return [[text.trim().slice(0, space), text.trim().slice(space).trim()]];
  }
  return words.map((word) => {
    const eq = word.indexOf("=");
    if (eq <= 0) throw badRequest(`${instruction}: ${JSON.stringify(word)} is not of the form KEY=value`);
    return [word.slice(0, eq), word.slice(eq + 1)];
  });
}

function setEnv(env: string[], name: string, value: string): string[] {
  return [...env.filter((e) => e.split("=", 1)[0] !== name), `${name}=${value}`];
}

/** Applies one `--change` line to `config` (changed in place). */
export function applyChange(config: RunConfig, line: string): void {
  const trimmed = line.trim();
  const match = /^(\S+)\s*([\s\S]*)$/.exec(trimmed);
  if (!match) throw badRequest("empty --change instruction");
  const instruction = match[1]!.toUpperCase();
  const rest = match[2]!.trim();
  const need = () => {
    if (!rest) throw badRequest(`${instruction} requires at least one argument`);
  };
  switch (instruction) {
    case "CMD":
      need();
      config.Cmd = commandForm(rest);
      return;
    case "ENTRYPOINT":
      need();
      config.Entrypoint = commandForm(rest);
      return;
    case "ENV":
      for (const [name, value] of keyValues(rest, instruction)) config.Env = setEnv(config.Env ?? [], name, value);
      return;
    case "LABEL":
      for (const [name, value] of keyValues(rest, instruction)) config.Labels = { ...(config.Labels ?? {}), [name]: value };
      return;
    case "EXPOSE":
      need();
      for (const port of rest.split(/\s+/)) {
        if (!/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/i.test(port)) throw badRequest(`EXPOSE: invalid port ${JSON.stringify(port)}`);
        config.ExposedPorts = { ...(config.ExposedPorts ?? {}), [port.includes("/") ? port.toLowerCase() : `${port}/tcp`]: {} };
      }
      return;
    case "VOLUME": {
      need();
      const listed = rest.startsWith("[") ? commandForm(rest) : undefined;
      const paths = listed && listed[0] !== "/bin/sh" ? listed : rest.split(/\s+/);
      for (const path of paths) config.Volumes = { ...(config.Volumes ?? {}), [path]: {} };
      return;
    }
    case "WORKDIR":
      need();
      // A relative WORKDIR continues from the current one, as in a Dockerfile.
      config.WorkingDir = rest.startsWith("/") ? rest : `${(config.WorkingDir || "/").replace(/\/$/, "")}/${rest}`;
      return;
    case "USER":
      need();
      config.User = rest;
      return;
    case "STOPSIGNAL":
      need();
      config.StopSignal = rest;
      return;
    case "ONBUILD":
      need();
      config.OnBuild = [...(config.OnBuild ?? []), rest];
      return;
    default:
      throw badRequest(`${match[1]} is not a valid change command (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)`);
  }
}
