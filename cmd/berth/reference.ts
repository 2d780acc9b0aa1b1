// Image references the way docker's client spells them: the familiar form people type
// (busybox:latest for docker.io/library/busybox:latest), and splitting a reference into
// the repository and tag that /images/create takes.
import { CliError } from "./errors.ts";

/** Drops docker.io/library/ (or docker.io/) and a digest, as `docker ps` shows images. */
export function familiarImage(ref: string): string {
  let name = ref;
  const at = name.indexOf("@");
  if (at >= 0) name = name.slice(0, at);
  if (name.startsWith("docker.io/library/")) name = name.slice("docker.io/library/".length);
  else if (name.startsWith("docker.io/")) name = name.slice("docker.io/".length);
  return name;
}

/** repository and tag (or digest) of a reference; no tag means "latest". */
export function splitReference(ref: string): { repository: string; tag: string; digest: boolean } {
  if (!ref || /\s/.test(ref)) throw new CliError(`invalid reference format: "${ref}"`);
  const at = ref.indexOf("@");
  if (at >= 0) return { repository: ref.slice(0, at), tag: ref.slice(at + 1), digest: true };
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  if (colon > slash) return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1), digest: false };
  return { repository: ref, tag: "", digest: false };
}
