import { test } from "node:test";
import assert from "node:assert/strict";
import { displayPorts } from "./ports.ts";

test("a port published under another number: address, host port, container port", () => {
  assert.equal(displayPorts([{ IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp" }]), "0.0.0.0:8080->80/tcp");
  assert.equal(displayPorts([{ IP: "::", PrivatePort: 80, PublicPort: 8080, Type: "tcp" }]), "[::]:8080->80/tcp");
});

test("consecutive same-number ports fold into a range per address and protocol; gaps split them", () => {
  const ports = [81, 80, 82, 90].map((p) => ({ IP: "0.0.0.0", PrivatePort: p, PublicPort: p, Type: "tcp" }));
  assert.equal(displayPorts(ports), "0.0.0.0:80-82->80-82/tcp, 0.0.0.0:90->90/tcp");
  assert.equal(displayPorts([{ IP: "::", PrivatePort: 53, PublicPort: 53, Type: "udp" }]), ":::53->53/udp");
});

test("exposed-only ports fold too, and remapped ones come last, sorted by container port", () => {
  const ports = [
    { IP: "0.0.0.0", PrivatePort: 22, PublicPort: 2222, Type: "tcp" },
    { PrivatePort: 444, Type: "tcp" },
    { PrivatePort: 443, Type: "tcp" },
    { PrivatePort: 443, Type: "udp" },
    { IP: "127.0.0.1", PrivatePort: 5000, PublicPort: 5000, Type: "tcp" },
  ];
  assert.equal(displayPorts(ports), "443-444/tcp, 443/udp, 127.0.0.1:5000->5000/tcp, 0.0.0.0:2222->22/tcp");
  assert.equal(displayPorts(null), "");
  assert.equal(displayPorts([]), "");
});
