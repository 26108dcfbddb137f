//! Global names in the zone tree: what the zone lookup asks of them ([`OutsideNames`] on
//! [`Globals`]), and how their prepared records join a CNAME chain from the zones.
//!
//! ```text
//!  pull.registry.example.  CNAME  contoso.registry.example.   (zone file)
//!  contoso.registry.example.  A   <the client's replica>      (prepared bytes, owner patched)
//! ```

use hickory_proto::rr::Name;

use super::Globals;
use crate::wire::MAX_NAME_LEN;
use crate::zone::{Outside, OutsideNames};

impl OutsideNames for Globals {
    /// A global name or an empty non-terminal above one: a stack buffer and two hash probes,
    /// no allocation.
    fn outside(&self, name: &Name) -> Option<Outside> {
        if self.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME_LEN];
        let wire = wire_lower_into(name, &mut buf)?;
        self.outside_wire(wire)
    }

    fn outside_wire(&self, wire: &[u8]) -> Option<Outside> {
        if self.is_empty() {
            return None;
        }
        if self.find(wire).is_some() {
            Some(Outside::Global)
        } else if self.is_ent(wire) {
            Some(Outside::Ent)
        } else {
            None
        }
    }
}

/// Lower-cased wire form of a name, written into `buf` (None if it does not fit, which a
/// valid name always does).
pub(crate) fn wire_lower_into<'b>(
    name: &Name,
    buf: &'b mut [u8; MAX_NAME_LEN],
) -> Option<&'b [u8]> {
    let mut at = 0usize;
    for label in name.iter() {
        let end = at + 1 + label.len();
        let dst = buf.get_mut(at..end)?;
        dst[0] = label.len() as u8;
        for (d, s) in dst[1..].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        at = end;
    }
    *buf.get_mut(at)? = 0;
    Some(&buf[..=at])
}

/// Copy pre-encoded RRs into a message, writing `owner` (a message offset below 0x4000) as
/// the owner of every RR whose owner is the question (the pointer to offset 12): the records
/// of a global name reached through a CNAME are owned by the CNAME's target, not the query
/// name. Other owners (a CNAME replica's chased records) are kept.
pub(crate) fn copy_owned_by(out: &mut Vec<u8>, rrs: &[u8], owner: u16) {
    const QUESTION: [u8; 2] = [0xc0, crate::wire::HEADER_LEN as u8];
    let pointer = (0xc000 | owner).to_be_bytes();
    let start = out.len();
    out.extend_from_slice(rrs);
    let rrs = &mut out[start..];
    let mut at = 0usize;
    while at < rrs.len() {
        // The owner: a pointer, or labels up to the root (prepared RRs are uncompressed).
        let name_end = loop {
            match rrs.get(at).copied() {
                Some(b) if b & 0xc0 == 0xc0 => {
                    if rrs.get(at..at + 2) == Some(&QUESTION[..]) {
                        rrs[at..at + 2].copy_from_slice(&pointer);
                    }
                    break at + 2;
                }
                Some(0) => break at + 1,
                Some(len) => at += 1 + usize::from(len),
                None => return,
            }
        };
        // TYPE, CLASS, TTL, RDLENGTH, RDATA.
        let Some(rdlen) = rrs.get(name_end + 8..name_end + 10) else {
            return;
        };
        at = name_end + 10 + usize::from(u16::from_be_bytes([rdlen[0], rdlen[1]]));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::rr::{RData, Record};

    use super::super::{Encoded, encode_rr, wire_lower};
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn lower_wire_on_the_stack_matches_the_allocating_one() {
        let mut buf = [0u8; MAX_NAME_LEN];
        let n = name("Fab.EU.Registry.Example.");
        assert_eq!(wire_lower_into(&n, &mut buf).unwrap(), &wire_lower(&n)[..]);
        assert_eq!(wire_lower_into(&Name::root(), &mut buf).unwrap(), &[0]);
    }

    #[test]
    fn only_owners_that_are_the_question_move_to_the_new_owner() {
        let mut e = Encoded::default();
        let a = |owner: &str, ip: [u8; 4]| {
            Record::from_rdata(
                name(owner),
                5,
                RData::A(std::net::Ipv4Addr::from(ip).into()),
            )
        };
        encode_rr(&mut e, &a("x.", [192, 0, 2, 1]), true).unwrap();
        encode_rr(&mut e, &a("kept.example.", [192, 0, 2, 2]), false).unwrap();
        encode_rr(&mut e, &a("x.", [192, 0, 2, 3]), true).unwrap();
        let mut out = vec![0xaa; 3];
        copy_owned_by(&mut out, &e.bytes, 0x40);
        assert_eq!(out.len(), 3 + e.bytes.len(), "nothing added or lost");
        let rr = &out[3..];
        // RR 1: pointer to 0x40, then TYPE A.
        assert_eq!(&rr[..4], &[0xc0, 0x40, 0, 1]);
        // RR 2 keeps its full owner; RR 3 (after it) is moved too.
        let second = 2 + 10 + 4;
        assert_eq!(rr[second], 4, "label 'kept'");
        let third = second + wire_lower(&name("kept.example.")).len() + 10 + 4;
        assert_eq!(&rr[third..third + 2], &[0xc0, 0x40]);
        assert_eq!(&rr[third + 12..], &[192, 0, 2, 3]);
    }
}
