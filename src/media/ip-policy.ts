/**
 * Which network addresses a media or model download may connect to: public unicast only, so a
 * request cannot be pointed at the server's own network (SSRF). Ranges come from ipaddr.js
 * (IANA's special-purpose registries) rather than a hand-written parser, because IPv6 has many
 * spellings of the same private address.
 *
 * IPv6 addresses that carry an IPv4 address are the usual way around such a check. Those whose
 * IPv4 address is always in the same place (IPv4-mapped ::ffff:0:0/96, the well-known NAT64
 * prefix 64:ff9b::/96, 6to4 2002::/16) are judged by that address; the rest (IPv4-compatible
 * ::/96, IPv4-translated ::ffff:0:0:0/96, local-use NAT64 64:ff9b:1::/48 whose layout depends on
 * the site, Teredo) are refused outright.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

type V4 = ipaddr.IPv4;
type V6 = ipaddr.IPv6;

const NAT64_WELL_KNOWN = ipaddr.IPv6.parse('64:ff9b::');
const GLOBAL_UNICAST = ipaddr.IPv6.parse('2000::');
const IPV4_COMPATIBLE = ipaddr.IPv6.parse('::');

function v4At(parts: readonly number[], hi: number): V4 {
  const a = parts[hi]!;
  const b = parts[hi + 1]!;
  return new ipaddr.IPv4([a >> 8, a & 255, b >> 8, b & 255]);
}

/** The IPv4 address an IPv6 address carries at a fixed place (mapped, NAT64 /96, 6to4), if any. */
export function embeddedIPv4(address: string): string | undefined {
  const a = parseV6(address);
  return a === undefined ? undefined : fixedEmbeddedV4(a)?.toString();
}

/**
 * IPv6 text → address, through the WHATWG URL parser's canonical form first: ipaddr.js reads
 * `::a.b.c.d` as `::ffff:a.b.c.d`, but the system connects to `::a.b.c.d` (IPv4-compatible).
 */
function parseV6(address: string): V6 | undefined {
  if (isIP(address) !== 6) return undefined;
  const zone = address.indexOf('%');
  const bare = zone < 0 ? address : address.slice(0, zone);
  let canonical: string;
  try {
    canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  if (!ipaddr.IPv6.isValid(canonical)) return undefined;
  const a = ipaddr.IPv6.parse(canonical);
  if (zone >= 0) a.zoneId = address.slice(zone + 1);
  return a;
}

function fixedEmbeddedV4(a: V6): V4 | undefined {
  const p = a.parts;
  if (a.range() === 'ipv4Mapped') return v4At(p, 6);
  if (a.match(NAT64_WELL_KNOWN, 96)) return v4At(p, 6);
  if (a.range() === '6to4') return v4At(p, 1);
  return undefined;
}

/** ipaddr.js range name → words for messages (with the article). */
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'an unspecified ("this network") address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address',
  private: 'a private address',
  reserved: 'a reserved or documentation address',
  as112: 'an AS112 (DNS sink) address',
  as112v6: 'an AS112 (DNS sink) address',
  amt: 'an AMT relay address',
  uniqueLocal: 'a unique-local address',
  deprecatedSiteLocal: 'a site-local address',
  discard: 'a discard-only address',
  rfc6145: 'an IPv4-translated address (::ffff:0:0:0/96)',
  rfc6052: 'a local-use NAT64 address (64:ff9b:1::/48)',
  teredo: 'a Teredo address',
  benchmarking: 'a benchmarking address',
  deprecatedOrchid: 'an ORCHID address',
  orchid2: 'an ORCHIDv2 address',
  droneRemoteIdProtocolEntityTags: 'a drone remote ID address',
  segmentRouting: 'a segment-routing address',
};

const words = (range: string) => RANGE_WORDS[range] ?? `a special-purpose address (${range})`;

function v4Reason(a: V4): string | undefined {
  const range = a.range() as string;
  return range === 'unicast' ? undefined : `is ${words(range)}`;
}

function v6Reason(a: V6): string | undefined {
  // a scoped address (fe80::1%eth0) names an interface of this machine, never a public host
  if (a.zoneId) return 'is a scoped address (with a zone id)';
  const embedded = fixedEmbeddedV4(a);
  if (embedded !== undefined) {
    const range = embedded.range() as string;
    return range === 'unicast' ? undefined : `embeds ${embedded.toString()}, ${words(range)}`;
  }
  const range = a.range() as string;
  if (range !== 'unicast') return `is ${words(range)}`;
  if (a.match(IPV4_COMPATIBLE, 96)) return 'is an IPv4-compatible address (::/96, deprecated)';
  // outside 2000::/3 everything is unallocated or special-purpose
  if (!a.match(GLOBAL_UNICAST, 3)) return 'is outside the global unicast range 2000::/3';
  return undefined;
}

/** Why an address may not be contacted, or undefined when it is a public unicast address. */
export function forbiddenAddressReason(address: string): string | undefined {
  let why: string | undefined;
  // node's strict isIP decides what an address is: ipaddr.js alone would also take "127.1" or "0x7f.1"
  if (isIP(address) === 4) why = v4Reason(ipaddr.IPv4.parse(address));
  else {
    const v6 = parseV6(address);
    if (v6 === undefined) return `${address} is not an IP address`;
    why = v6Reason(v6);
  }
  return why === undefined ? undefined : `${address} ${why}`;
}
