// Image references the way containerd's archive code names things: Docker-style
// normalisation (busybox → docker.io/library/busybox:latest), the familiar short
// form for manifest.json RepoTags, and the OCI ref.name (just the tag).

export class ReferenceError extends Error {
  override name = "ReferenceError";
}

const nameComponent = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const tag = "[\\w][\\w.-]{0,127}";
const digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const referencePattern = new RegExp(`^((?:${domain}/)?${nameComponent}(?:/${nameComponent})*)(?::(${tag}))?(?:@(${digest}))?$`);

export interface DockerReference {
  /** domain/path, e.g. docker.io/library/busybox */
  name: string;
  tag?: string;
  digest?: string;
}

function splitDockerDomain(ref: string): [string, string] {
  const slash = ref.indexOf("/");
  let host: string;
  let remainder: string;
  if (slash === -1 || (!/[.:]/.test(ref.slice(0, slash)) && ref.slice(0, slash) !== "localhost")) {
    host = "docker.io";
    remainder = ref;
  } else {
    host = ref.slice(0, slash);
    remainder = ref.slice(slash + 1);
  }
  if (host === "index.docker.io") host = "docker.io";
  if (host === "docker.io" && !remainder.includes("/")) remainder = `library/${remainder}`;
  return [host, remainder];
}

/** reference.ParseNormalizedNamed. */
export function parseNormalizedNamed(ref: string): DockerReference {
  if (/^[a-f0-9]{64}$/.test(ref)) throw new ReferenceError(`invalid repository name (${ref}), cannot specify 64-byte hexadecimal strings`);
  const [host, remainder] = splitDockerDomain(ref);
  const nameEnd = remainder.search(/[:@]/);
  const remoteName = nameEnd === -1 ? remainder : remainder.slice(0, nameEnd);
  if (remoteName.toLowerCase() !== remoteName) throw new ReferenceError(`invalid reference format: repository name must be lowercase: "${ref}"`);
  const match = referencePattern.exec(`${host}/${remainder}`);
  if (!match) throw new ReferenceError(`invalid reference format: "${ref}"`);
  const name = match[1]!;
  if (name.length > 255) throw new ReferenceError(`repository name must not be more than 255 characters: "${ref}"`);
  return { name, ...(match[2] ? { tag: match[2] } : {}), ...(match[3] ? { digest: match[3] } : {}) };
}

function referenceString(r: DockerReference): string {
  return `${r.name}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** reference.ParseDockerRef: normalised, a digest wins over a tag, no tag means :latest. */
export function normalizeDockerRef(ref: string): string {
  const r = parseNormalizedNamed(ref);
  if (r.digest) return `${r.name}@${r.digest}`;
  return referenceString({ name: r.name, tag: r.tag ?? "latest" });
}

/** familiarizeReference: TagNameOnly then FamiliarString (docker.io/library/x:t → x:t). */
export function familiarizeRef(ref: string): string {
  const r = parseNormalizedNamed(ref);
  const tagged: DockerReference = r.tag || r.digest ? r : { ...r, tag: "latest" };
  let name = tagged.name;
  if (name.startsWith("docker.io/")) {
    name = name.slice("docker.io/".length);
    if (name.startsWith("library/") && !name.slice("library/".length).includes("/")) name = name.slice("library/".length);
  }
  return referenceString({ ...tagged, name });
}

/**
 * containerd's reference.Parse(...).Object: the tag (or @digest) after the
 * locator. Like Go's url.Parse, a host with a non-numeric port ("busybox:latest")
 * does not parse, and then the whole name is used.
 */
export function ociReferenceName(name: string): string {
  if (name.includes("://")) return name;
  const slash = name.indexOf("/");
  const host = slash === -1 ? name : name.slice(0, slash);
  const path = slash === -1 ? "" : name.slice(slash);
  if (host === "") return name;
  const colon = host.lastIndexOf(":");
  if (colon !== -1 && !host.endsWith("]") && !/^[0-9]*$/.test(host.slice(colon + 1))) return name;
  const split = path.search(/[:@]/);
  if (split === -1) return "";
  const object = path.slice(split);
  return object.startsWith(":") ? object.slice(1) : object;
}

/** archive.AddRefPrefix / FilterRefPrefix: a bare tag becomes prefix:tag; full names pass (or must match the prefix). */
export function refTranslator(prefix: string, checkPrefix: boolean): (ref: string) => string {
  return (ref) => {
    if (/[/:@]/.test(ref)) {
      if (checkPrefix && !isImagePrefix(ref, prefix)) return "";
      return ref;
    }
    return `${prefix}:${ref}`;
  };
}

function isImagePrefix(s: string, prefix: string): boolean {
  if (!s.startsWith(prefix)) return false;
  if (s.length > prefix.length) return "/:@".includes(s[prefix.length]!);
  return true;
}
