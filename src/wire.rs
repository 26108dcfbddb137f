//! The query side of the wire format: a strict, allocation-free parser for what an
//! authoritative server needs from a query (header, the one question, the OPT record and its
//! EDNS Client Subnet option), and the small writers for the fixed parts of a response.
//!
//! The parser borrows from the packet: the question is kept as raw bytes so that the answer
//! echoes it byte for byte (0x20 mixed case survives), and its lower-cased form is built in a
//! stack buffer for the lookups.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Header length (RFC 1035 §4.1.1).
pub(crate) const HEADER_LEN: usize = 12;
/// Type code of the OPT pseudo-record (RFC 6891).
pub(crate) const TYPE_OPT: u16 = 41;
/// EDNS option code of Client Subnet (RFC 7871).
pub(crate) const OPTION_ECS: u16 = 8;
/// The UDP payload size we advertise and cap answers at (DNS flag day 2020).
pub(crate) const OUR_UDP_PAYLOAD: u16 = 1232;
/// Longest possible domain name on the wire.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Response codes we produce (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    /// Extended rcode 16: the upper 8 bits (1) travel in the OPT record.
    BadVers = 16,
}

impl Rcode {
    /// Lower four bits, for the header.
    pub(crate) fn low(self) -> u16 {
        (self as u16) & 0x0f
    }

    /// Upper eight bits, for the OPT record.
    pub(crate) fn high(self) -> u8 {
        ((self as u16) >> 4) as u8
    }
}

/// An EDNS Client Subnet option as received (RFC 7871 §6), already validated.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct ClientSubnet {
    /// 1 = IPv4, 2 = IPv6.
    pub(crate) family: u16,
    /// SOURCE PREFIX-LENGTH.
    pub(crate) source_prefix: u8,
    /// SCOPE PREFIX-LENGTH as sent (must be 0 in queries; kept only for completeness).
    pub(crate) scope_prefix: u8,
    /// The address, with every bit past `source_prefix` zero (checked).
    pub(crate) addr: IpAddr,
}

impl ClientSubnet {
    /// The option a resolver would send for `net` (explain, tests).
    pub(crate) fn from_net(net: ipnet::IpNet) -> Self {
        Self {
            family: if net.addr().is_ipv4() { 1 } else { 2 },
            source_prefix: net.prefix_len(),
            scope_prefix: 0,
            addr: net.network(),
        }
    }

    /// Number of address octets on the wire: ceil(source / 8).
    pub(crate) fn addr_octets(&self) -> usize {
        usize::from(self.source_prefix).div_ceil(8)
    }
}

/// What the OPT record of a query said.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct EdnsInfo {
    /// Requestor's UDP payload size (values below 512 are treated as 512, RFC 6891 §6.2.3).
    pub(crate) udp_payload: u16,
    /// EDNS version.
    pub(crate) version: u8,
    /// The DO bit (RFC 3225), copied into the response.
    pub(crate) dnssec_ok: bool,
    /// The CO bit (Compact Answers OK, RFC 9824 §4): with DO, a name that does not exist is
    /// answered NXDOMAIN (still with the compact NSEC), and the bit is echoed.
    pub(crate) compact_ok: bool,
    /// The Client Subnet option, when exactly one valid option was present.
    pub(crate) client_subnet: Option<ClientSubnet>,
}

impl EdnsInfo {
    /// The EDNS flags of the reply: DO copied (RFC 3225 §3); CO copied when DO is set (we
    /// implement compact denial and its signal, RFC 9824 §4).
    pub(crate) fn reply_flags(&self) -> u16 {
        match (self.dnssec_ok, self.compact_ok) {
            (true, true) => 0xc000,
            (true, false) => 0x8000,
            _ => 0,
        }
    }

    /// A name that does not exist is answered NXDOMAIN under compact denial (DO and CO).
    pub(crate) fn compact_nxdomain(&self) -> bool {
        self.dnssec_ok && self.compact_ok
    }
}

/// A parsed query. Borrowed from the packet.
#[derive(Debug)]
pub(crate) struct Query<'a> {
    /// Message ID.
    pub(crate) id: u16,
    /// Opcode (4 bits).
    pub(crate) opcode: u8,
    /// RD flag, copied into the response.
    pub(crate) recursion_desired: bool,
    /// CD flag, copied into the response.
    pub(crate) checking_disabled: bool,
    /// The raw question: name, type and class, exactly as sent.
    pub(crate) question: &'a [u8],
    /// Length of the name part of `question`.
    pub(crate) qname_len: usize,
    /// The query type.
    pub(crate) qtype: u16,
    /// The query class.
    pub(crate) qclass: u16,
    /// The OPT record, if any.
    pub(crate) edns: Option<EdnsInfo>,
}

impl Query<'_> {
    /// The question name in wire form, as sent.
    pub(crate) fn qname_wire(&self) -> &[u8] {
        &self.question[..self.qname_len]
    }

    /// The largest response we may send over UDP (RFC 1035 512, or the EDNS size capped at ours).
    pub(crate) fn udp_limit(&self) -> usize {
        match &self.edns {
            None => 512,
            Some(e) => usize::from(e.udp_payload.clamp(512, OUR_UDP_PAYLOAD)),
        }
    }
}

/// Why a query cannot be answered normally. Each variant says how to answer (or not).
#[derive(Debug, Eq, PartialEq)]
pub(crate) enum Reject {
    /// Not worth an answer: too short for a header, or a response (QR=1). Dropping responses
    /// avoids answer loops between servers.
    Drop,
    /// Answer with this rcode; `question_len` bytes after the header are the question to echo
    /// (0 when it could not be parsed), and `edns` says whether to include an OPT record.
    Error {
        /// Message ID.
        id: u16,
        /// Opcode to echo.
        opcode: u8,
        /// RD flag to echo.
        recursion_desired: bool,
        /// The rcode.
        rcode: Rcode,
        /// Length of the echoed question (0 = none).
        question_len: usize,
        /// Include an OPT record (the query had a parseable one).
        edns: Option<EdnsInfo>,
    },
}

/// Parse a query. `Ok` only for a well-formed standard query with exactly one question and
/// EDNS version 0 or no EDNS; everything else says how to answer in `Reject`.
pub(crate) fn parse_query(packet: &[u8]) -> Result<Query<'_>, Reject> {
    if packet.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop);
    }
    let opcode = ((flags >> 11) & 0x0f) as u8;
    let recursion_desired = flags & 0x0100 != 0;
    let checking_disabled = flags & 0x0010 != 0;
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    let ancount = u16::from_be_bytes([packet[6], packet[7]]);
    let nscount = u16::from_be_bytes([packet[8], packet[9]]);
    let arcount = u16::from_be_bytes([packet[10], packet[11]]);

    let error = |rcode, question_len, edns| Reject::Error {
        id,
        opcode,
        recursion_desired,
        rcode,
        question_len,
        edns,
    };

    // RFC 1035 §4.1.1: "4 Not Implemented - The name server does not support the requested
    // kind of query." Only QUERY (0) is served; NOTIFY, UPDATE, IQUERY, STATUS, DSO and
    // unassigned codes all get NOTIMP. Their first section is echoed and their OPT answered
    // (RFC 6891 §7: a response to a request with OPT carries OPT) when the message is well
    // formed; otherwise a bare header.
    if opcode != 0 {
        let (question_len, edns) =
            notimp_echo(packet, qdcount, ancount, nscount, arcount).unwrap_or((0, None));
        return Err(error(Rcode::NotImp, question_len, edns));
    }
    if qdcount != 1 {
        return Err(error(Rcode::FormErr, 0, None));
    }

    let mut pos = HEADER_LEN;
    let qname_len = match skip_name_uncompressed(packet, pos) {
        Some(len) => len,
        None => return Err(error(Rcode::FormErr, 0, None)),
    };
    pos += qname_len;
    if packet.len() < pos + 4 {
        return Err(error(Rcode::FormErr, 0, None));
    }
    let qtype = u16::from_be_bytes([packet[pos], packet[pos + 1]]);
    let qclass = u16::from_be_bytes([packet[pos + 2], packet[pos + 3]]);
    pos += 4;
    let question_len = pos - HEADER_LEN;

    // A query carries no answer or authority records; records there mean a confused or
    // hostile client.
    if ancount != 0 || nscount != 0 {
        return Err(error(Rcode::FormErr, question_len, None));
    }

    let mut edns: Option<EdnsInfo> = None;
    let mut ecs_count = 0usize;
    for _ in 0..arcount {
        let rr = match read_rr(packet, pos) {
            Some(rr) => rr,
            None => return Err(error(Rcode::FormErr, question_len, edns)),
        };
        pos = rr.end;
        if rr.rtype != TYPE_OPT {
            // TSIG and other additional records are not supported; they are ignored, which
            // answers as an unsigned query would be answered.
            continue;
        }
        // RFC 6891 §6.1.1: "If a query message with more than one OPT RR is received, a
        // FORMERR (RCODE=1) MUST be returned." The OPT owner must be the root.
        if edns.is_some() || !rr.owner_is_root {
            return Err(error(Rcode::FormErr, question_len, None));
        }
        let info = EdnsInfo {
            udp_payload: rr.class.max(512),
            version: ((rr.ttl >> 16) & 0xff) as u8,
            dnssec_ok: rr.ttl & 0x8000 != 0,
            compact_ok: rr.ttl & 0x4000 != 0,
            client_subnet: None,
        };
        edns = Some(info);
        let mut opt_pos = rr.rdata_start;
        let mut client_subnet = None;
        while opt_pos < rr.end {
            if opt_pos + 4 > rr.end {
                return Err(error(Rcode::FormErr, question_len, edns));
            }
            let code = u16::from_be_bytes([packet[opt_pos], packet[opt_pos + 1]]);
            let len = usize::from(u16::from_be_bytes([
                packet[opt_pos + 2],
                packet[opt_pos + 3],
            ]));
            let data_start = opt_pos + 4;
            let data_end = data_start + len;
            if data_end > rr.end {
                return Err(error(Rcode::FormErr, question_len, edns));
            }
            if code == OPTION_ECS {
                ecs_count += 1;
                match parse_client_subnet(&packet[data_start..data_end]) {
                    Some(cs) => client_subnet = Some(cs),
                    None => return Err(error(Rcode::FormErr, question_len, edns)),
                }
            }
            // Other options (COOKIE, NSID, padding, unknown) are ignored and never echoed
            // (RFC 6891 §6.1.2: "Any OPTION-CODE values not understood by a responder or
            // requestor MUST be ignored").
            opt_pos = data_end;
        }
        // RFC 7871 does not allow two Client Subnet options in one query: which one would the
        // scope answer? Refuse to guess.
        if ecs_count > 1 {
            return Err(error(Rcode::FormErr, question_len, edns));
        }
        if let Some(e) = edns.as_mut() {
            e.client_subnet = client_subnet;
        }
    }

    if let Some(e) = &edns {
        // RFC 6891 §6.1.3: "If a responder does not implement the VERSION level of the
        // request, then it MUST respond with RCODE=BADVERS." The response carries version 0.
        if e.version > 0 {
            return Err(error(Rcode::BadVers, question_len, edns));
        }
    }

    Ok(Query {
        id,
        opcode,
        recursion_desired,
        checking_disabled,
        question: &packet[HEADER_LEN..HEADER_LEN + question_len],
        qname_len,
        qtype,
        qclass,
        edns,
    })
}

/// For a NOTIMP answer: the length of a one-entry first section to echo, and the OPT record's
/// facts, when the message parses as a sequence of records. None when it does not.
fn notimp_echo(
    packet: &[u8],
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
) -> Option<(usize, Option<EdnsInfo>)> {
    if qdcount != 1 {
        return None;
    }
    let mut pos = HEADER_LEN + skip_name_uncompressed(packet, HEADER_LEN)? + 4;
    if pos > packet.len() {
        return None;
    }
    let question_len = pos - HEADER_LEN;
    for _ in 0..u32::from(ancount) + u32::from(nscount) {
        pos = read_rr(packet, pos)?.end;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let rr = read_rr(packet, pos)?;
        pos = rr.end;
        if rr.rtype == TYPE_OPT {
            if edns.is_some() {
                return None;
            }
            edns = Some(EdnsInfo {
                udp_payload: rr.class.max(512),
                version: 0,
                dnssec_ok: rr.ttl & 0x8000 != 0,
                compact_ok: rr.ttl & 0x4000 != 0,
                client_subnet: None,
            });
        }
    }
    Some((question_len, edns))
}

/// Parse and validate an ECS option body (RFC 7871 §6).
fn parse_client_subnet(data: &[u8]) -> Option<ClientSubnet> {
    if data.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source_prefix = data[2];
    let scope_prefix = data[3];
    let addr_bytes = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source_prefix > max || scope_prefix > max {
        return None;
    }
    // "ADDRESS ... MUST be truncated to the number of bits indicated by the SOURCE
    // PREFIX-LENGTH field, padding with 0 bits to pad to the end of the last octet needed."
    if addr_bytes.len() != usize::from(source_prefix).div_ceil(8) {
        return None;
    }
    let mut full = [0u8; 16];
    full[..addr_bytes.len()].copy_from_slice(addr_bytes);
    // "A server receiving an ECS option that uses ... non-zero bits beyond SOURCE
    // PREFIX-LENGTH ... SHOULD return FORMERR to reject the packet."
    if !source_prefix.is_multiple_of(8) {
        let last = addr_bytes[addr_bytes.len() - 1];
        let keep = 0xffu8 << (8 - source_prefix % 8);
        if last & !keep != 0 {
            return None;
        }
    }
    let addr = if family == 1 {
        IpAddr::V4(Ipv4Addr::new(full[0], full[1], full[2], full[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(full))
    };
    Some(ClientSubnet {
        family,
        source_prefix,
        scope_prefix,
        addr,
    })
}

/// Length of an uncompressed name starting at `pos`, validating label lengths and the 255
/// octet limit. Compression pointers are not allowed in a question (nothing precedes it).
fn skip_name_uncompressed(packet: &[u8], pos: usize) -> Option<usize> {
    let mut p = pos;
    loop {
        let len = *packet.get(p)? as usize;
        if len == 0 {
            p += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        p += 1 + len;
        if p - pos > MAX_NAME_LEN {
            return None;
        }
    }
    if p - pos > MAX_NAME_LEN || p > packet.len() {
        return None;
    }
    Some(p - pos)
}

/// Skip a possibly compressed name (additional records may point back into the question).
fn skip_name(packet: &[u8], pos: usize) -> Option<(usize, bool)> {
    let first = *packet.get(pos)?;
    if first == 0 {
        return Some((pos + 1, true));
    }
    let mut p = pos;
    let mut total = 0usize;
    loop {
        let len = *packet.get(p)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((p + 1, false));
                }
                p += 1 + usize::from(len);
                total += 1 + usize::from(len);
                if total > MAX_NAME_LEN {
                    return None;
                }
            }
            // A pointer ends the name in this position (where it points was checked when the
            // earlier name was read, or is irrelevant: we never expand it).
            0xc0 => {
                packet.get(p + 1)?;
                return Some((p + 2, false));
            }
            _ => return None,
        }
    }
}

struct RawRr {
    owner_is_root: bool,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata_start: usize,
    end: usize,
}

fn read_rr(packet: &[u8], pos: usize) -> Option<RawRr> {
    let (p, owner_is_root) = skip_name(packet, pos)?;
    let fixed = packet.get(p..p + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rdata_start = p + 10;
    let end = rdata_start + rdlen;
    if end > packet.len() {
        return None;
    }
    Some(RawRr {
        owner_is_root,
        rtype,
        class,
        ttl,
        rdata_start,
        end,
    })
}

/// Lower-case a wire-format name into `buf`, returning the used part. Used as the key for
/// exact-name lookups without allocating.
pub(crate) fn lowercase_wire<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME_LEN]) -> &'b [u8] {
    let n = name.len().min(MAX_NAME_LEN);
    for (dst, src) in buf.iter_mut().zip(&name[..n]) {
        *dst = src.to_ascii_lowercase();
    }
    // Label length octets are < 64 and so never in 'A'..='Z' (65..=90)? They can be: a label
    // of length 65..90 is impossible (max 63), so lower-casing never touches them.
    &buf[..n]
}

//------------ Writers -------------------------------------------------------------------------

/// Write a response header into `out` (which is cleared first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    id: u16,
    opcode: u8,
    authoritative: bool,
    truncated: bool,
    recursion_desired: bool,
    checking_disabled: bool,
    rcode: Rcode,
    counts: [u16; 4],
) {
    out.clear();
    let mut flags: u16 = 0x8000 | (u16::from(opcode & 0x0f) << 11);
    if authoritative {
        flags |= 0x0400;
    }
    if truncated {
        flags |= 0x0200;
    }
    if recursion_desired {
        flags |= 0x0100;
    }
    if checking_disabled {
        flags |= 0x0010;
    }
    flags |= rcode.low();
    // One copy of the whole header: a dozen small appends each re-check the capacity.
    let mut h = [0u8; HEADER_LEN];
    h[..2].copy_from_slice(&id.to_be_bytes());
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    for (i, c) in counts.iter().enumerate() {
        h[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&h);
}

/// Overwrite the four section counts of a header already in `out`.
pub(crate) fn set_counts(out: &mut [u8], counts: [u16; 4]) {
    for (i, c) in counts.iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
}

/// Append our OPT record: payload 1232, version 0, the given extended rcode bits and EDNS
/// flags ([`EdnsInfo::reply_flags`]), and the Client Subnet option echoed with `scope` when given (RFC 7871 §7.2.1: "the FAMILY,
/// SOURCE PREFIX-LENGTH, and ADDRESS fields MUST be copied from the query").
pub(crate) fn write_opt(
    out: &mut Vec<u8>,
    rcode_high: u8,
    flags: u16,
    ecs: Option<(&ClientSubnet, u8)>,
) {
    // Built on the stack and appended with one copy (at most 11 + 8 + 16 octets).
    let mut o = [0u8; 11 + 8 + 16];
    // o[0] = 0: the root owner.
    o[1..3].copy_from_slice(&TYPE_OPT.to_be_bytes());
    o[3..5].copy_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
    let ttl: u32 = (u32::from(rcode_high) << 24) | u32::from(flags);
    o[5..9].copy_from_slice(&ttl.to_be_bytes());
    let len = match ecs {
        // RDLENGTH 0.
        None => 11,
        Some((cs, scope)) => {
            let mut addr = [0u8; 16];
            let max = match cs.addr {
                IpAddr::V4(a) => {
                    addr[..4].copy_from_slice(&a.octets());
                    4
                }
                IpAddr::V6(a) => {
                    addr = a.octets();
                    16
                }
            };
            // The parser allows no more octets than the family has; never index past them.
            let octets = cs.addr_octets().min(max);
            let opt_len = 4 + octets;
            o[9..11].copy_from_slice(&((4 + opt_len) as u16).to_be_bytes());
            o[11..13].copy_from_slice(&OPTION_ECS.to_be_bytes());
            o[13..15].copy_from_slice(&(opt_len as u16).to_be_bytes());
            o[15..17].copy_from_slice(&cs.family.to_be_bytes());
            o[17] = cs.source_prefix;
            o[18] = scope;
            o[19..19 + octets].copy_from_slice(&addr[..octets]);
            19 + octets
        }
    };
    out.extend_from_slice(&o[..len]);
}

/// Length of the OPT record `write_opt` would append.
pub(crate) fn opt_len(ecs: Option<&ClientSubnet>) -> usize {
    11 + ecs.map_or(0, |cs| 8 + cs.addr_octets())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&arcount.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(extra);
        p
    }

    fn opt(version: u8, options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x10, 0x00, 0, version, 0x80, 0];
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.push(source);
        o.push(scope);
        o.extend_from_slice(addr);
        o
    }

    const NAME: &[u8] = b"\x03WwW\x07example\x00";

    fn rcode_of(r: Result<Query<'_>, Reject>) -> Rcode {
        match r {
            Err(Reject::Error { rcode, .. }) => rcode,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn plain_query() {
        let p = query(NAME, 1, &[], 0);
        let q = parse_query(&p).expect("parses");
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired);
        assert_eq!(q.qname_wire(), NAME);
        assert_eq!(q.qtype, 1);
        assert_eq!(q.udp_limit(), 512);
        let mut buf = [0u8; MAX_NAME_LEN];
        assert_eq!(
            lowercase_wire(q.qname_wire(), &mut buf),
            b"\x03www\x07example\x00"
        );
    }

    #[test]
    fn edns_and_ecs() {
        let p = query(NAME, 1, &opt(0, &ecs(1, 24, 0, &[192, 0, 2])), 1);
        let q = parse_query(&p).expect("parses");
        let e = q.edns.expect("edns");
        assert_eq!(e.udp_payload, 4096);
        assert!(e.dnssec_ok);
        assert_eq!(q.udp_limit(), 1232);
        let cs = e.client_subnet.expect("ecs");
        assert_eq!(cs.addr, "192.0.2.0".parse::<IpAddr>().expect("ip"));
        assert_eq!(cs.source_prefix, 24);

        let p = query(
            NAME,
            1,
            &opt(0, &ecs(2, 56, 0, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x01])),
            1,
        );
        let cs = parse_query(&p)
            .expect("v6")
            .edns
            .expect("e")
            .client_subnet
            .expect("cs");
        assert_eq!(cs.addr, "2001:db8:0:100::".parse::<IpAddr>().expect("ip"));

        // Source prefix 0: no address octets.
        let p = query(NAME, 1, &opt(0, &ecs(1, 0, 0, &[])), 1);
        let cs = parse_query(&p)
            .expect("/0")
            .edns
            .expect("e")
            .client_subnet
            .expect("cs");
        assert_eq!(cs.source_prefix, 0);
    }

    #[test]
    fn ecs_validation() {
        let bad = [
            ecs(3, 24, 0, &[1, 2, 3]),       // unknown family
            ecs(1, 33, 0, &[1, 2, 3, 4, 5]), // prefix too long
            ecs(1, 20, 0, &[192, 0, 2]),     // host bits past /20 set (2 = 0000_0010)
            ecs(1, 24, 0, &[192, 0, 2, 1]),  // too many address octets
            ecs(1, 24, 0, &[192, 0]),        // too few
            ecs(2, 129, 0, &[0; 17]),        // v6 prefix too long
        ];
        for b in bad {
            let p = query(NAME, 1, &opt(0, &b), 1);
            assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr, "{b:?}");
        }
        let mut two = ecs(1, 24, 0, &[192, 0, 2]);
        two.extend(ecs(1, 24, 0, &[198, 51, 100]));
        let p = query(NAME, 1, &opt(0, &two), 1);
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
    }

    #[test]
    fn header_level_errors() {
        assert!(matches!(parse_query(&[0; 5]), Err(Reject::Drop)));
        let mut p = query(NAME, 1, &[], 0);
        p[2] |= 0x80; // QR
        assert!(matches!(parse_query(&p), Err(Reject::Drop)));
        let mut p = query(NAME, 1, &[], 0);
        p[2] = (p[2] & 0x87) | (5 << 3); // UPDATE
        assert_eq!(rcode_of(parse_query(&p)), Rcode::NotImp);
        let mut p = query(NAME, 1, &[], 0);
        p[2] = (p[2] & 0x87) | (15 << 3); // unassigned
        assert_eq!(rcode_of(parse_query(&p)), Rcode::NotImp);
        let mut p = query(NAME, 1, &[], 0);
        p[5] = 2; // two questions
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
        let p = query(b"\x03www\x07exa", 1, &[], 0); // truncated name
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
        let p = query(b"\xc0\x0c", 1, &[], 0); // pointer in question
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
        let mut two_opt = opt(0, &[]);
        two_opt.extend(opt(0, &[]));
        let p = query(NAME, 1, &two_opt, 2);
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
        let p = query(NAME, 1, &opt(1, &[]), 1);
        assert_eq!(rcode_of(parse_query(&p)), Rcode::BadVers);
        // Unknown options are fine.
        let p = query(NAME, 1, &opt(0, &[0xfd, 0xe9, 0, 2, 1, 2]), 1);
        assert!(parse_query(&p).is_ok());
        // Truncated option.
        let p = query(NAME, 1, &opt(0, &[0xfd, 0xe9, 0, 9, 1, 2]), 1);
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
    }

    #[test]
    fn notimp_echoes_question_and_opt_when_well_formed() {
        let mut p = query(NAME, 6, &opt(0, &[]), 1);
        p[2] = (p[2] & 0x87) | (4 << 3); // NOTIFY with OPT
        match parse_query(&p) {
            Err(Reject::Error {
                rcode: Rcode::NotImp,
                question_len,
                edns: Some(_),
                ..
            }) => assert_eq!(question_len, NAME.len() + 4),
            other => panic!("{other:?}"),
        }
        p.truncate(p.len() - 3); // broken OPT: bare header
        match parse_query(&p) {
            Err(Reject::Error {
                rcode: Rcode::NotImp,
                question_len: 0,
                edns: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_names_are_rejected() {
        let mut name = Vec::new();
        for _ in 0..5 {
            name.push(63);
            name.extend_from_slice(&[b'a'; 63]);
        }
        name.push(0);
        let p = query(&name, 1, &[], 0);
        assert_eq!(rcode_of(parse_query(&p)), Rcode::FormErr);
    }

    #[test]
    fn opt_writer_round_trips_ecs() {
        let cs = ClientSubnet {
            family: 1,
            source_prefix: 20,
            scope_prefix: 0,
            addr: "192.0.16.0".parse().expect("ip"),
        };
        let mut out = Vec::new();
        write_opt(&mut out, 0, 0, Some((&cs, 24)));
        assert_eq!(out.len(), opt_len(Some(&cs)));
        assert_eq!(&out[out.len() - 7..], &[0, 1, 20, 24, 192, 0, 16]);
    }
}
