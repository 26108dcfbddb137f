//! Response rate limiting (RRL) for UDP, like Knot's `rrl` module, NSD's `rrl-*` and BIND's
//! `rate-limit`: a token bucket per (source prefix, response class) in a fixed-size table.
//!
//! - The class comes from the response the request path produced ([`dns::Outcome`]): answer
//!   (NOERROR, NODATA included), NXDOMAIN, referral, or error (any other rcode).
//! - Each UDP thread owns its table ([`Limiter`]), so the answer path takes no lock, waits on
//!   nothing and allocates nothing: a check is a hash, two slot reads and integer arithmetic.
//!   The table never grows: a new key takes the older of its two candidate slots, so a
//!   spoofed flood over many prefixes only recycles slots.
//! - A limited response is dropped, except every `slip`-th, which is sent truncated (TC set,
//!   no records) so that a real client behind the prefix retries over TCP, which is never
//!   limited.
//! - A prefix is *limited* from its first refused response until its bucket is full again;
//!   one log line marks each end, never one per packet.
//!
//! Time is passed in (nanoseconds from any fixed origin), so the logic is tested with
//! explicit clocks.

use std::net::IpAddr;

use tracing::{info, warn};

use crate::config::RrlConfig;
use crate::dns::Outcome;
use crate::wire::Rcode;

/// One response, in nanotokens: buckets count in 10⁻⁹ tokens so that refill is exact integer
/// arithmetic (`elapsed_ns × rate`).
const COST: u64 = 1_000_000_000;

/// The class of a response, for separate buckets.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Class {
    /// NOERROR with records, or NODATA.
    Answer,
    /// NXDOMAIN.
    Nxdomain,
    /// A referral to a delegated zone.
    Referral,
    /// Any other rcode (FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS…).
    Error,
}

impl Class {
    /// The class of the response `outcome` describes.
    pub(crate) fn of(outcome: &Outcome) -> Self {
        match outcome.rcode {
            Rcode::NoError if outcome.referral => Self::Referral,
            Rcode::NoError => Self::Answer,
            Rcode::NxDomain => Self::Nxdomain,
            _ => Self::Error,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Nxdomain => "nxdomain",
            Self::Referral => "referral",
            Self::Error => "error",
        }
    }
}

/// What to do with one response.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated (TC, no records).
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The masked source prefix.
    prefix: u128,
    /// 0: empty; else 1 + family × 4 + class.
    tag: u8,
    /// Limited since its first refused response, until the bucket is full again.
    limited: bool,
    /// Nanotokens left.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    stamp: u64,
    /// Refused responses in this limited period (drives the slip ratio and the log line).
    refused: u64,
    /// Of them, sent truncated.
    slipped: u64,
}

/// One UDP thread's rate limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    config: RrlConfig,
    slots: Box<[Slot]>,
    seed: u64,
    /// Slots in the limited state, so the sweep is skipped when there are none.
    limited: usize,
}

impl Limiter {
    /// A limiter with `config`'s settings and an empty table. The table is allocated only
    /// while limiting is on: off (the default) costs each UDP thread nothing.
    pub(crate) fn new(config: &RrlConfig) -> Self {
        Self {
            config: config.clone(),
            slots: vec![Slot::default(); Self::slots_for(config)].into_boxed_slice(),
            seed: rand::random(),
            limited: 0,
        }
    }

    /// Take new settings (a reload); the table is kept unless the slots it needs changed.
    pub(crate) fn reconfigure(&mut self, config: &RrlConfig) {
        if *config == self.config {
            return;
        }
        if Self::slots_for(config) != self.slots.len() {
            *self = Self::new(config);
        } else {
            self.config = config.clone();
        }
    }

    /// Table slots `config` needs: none while limiting is off.
    fn slots_for(config: &RrlConfig) -> usize {
        if config.enabled { config.table_size } else { 0 }
    }

    /// Limiting is on.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Account one response of `class` to `source` at `now` (ns) and say what to do with it.
    pub(crate) fn check(&mut self, source: IpAddr, class: Class, now: u64) -> Verdict {
        if !self.config.enabled || self.config.whitelist.iter().any(|n| n.contains(&source)) {
            return Verdict::Send;
        }
        let (prefix, family) = self.prefix(source);
        let tag = 1 + family * 4 + class as u8;
        let i = self.index(prefix, tag);
        let capacity = self.capacity();
        let n = self.slots.len();
        let j = i ^ 1;
        let at = if self.slots[i].tag == tag && self.slots[i].prefix == prefix {
            i
        } else if j < n && self.slots[j].tag == tag && self.slots[j].prefix == prefix {
            j
        } else {
            // Take the candidate touched longest ago (an empty one first).
            let victim = if j < n && self.slots[j].stamp < self.slots[i].stamp {
                j
            } else {
                i
            };
            if self.slots[victim].limited {
                self.end(victim, "its bucket was reused");
            }
            self.slots[victim] = Slot {
                prefix,
                tag,
                limited: false,
                tokens: capacity,
                stamp: now,
                refused: 0,
                slipped: 0,
            };
            victim
        };
        self.refill(at, now);
        let slot = &mut self.slots[at];
        if slot.tokens >= COST {
            slot.tokens -= COST;
            return Verdict::Send;
        }
        if !slot.limited {
            slot.limited = true;
            slot.refused = 0;
            slot.slipped = 0;
            self.limited += 1;
            warn!(
                prefix = %show(prefix, family, self.prefix_len(family)),
                class = class.name(),
                rate = self.config.rate,
                "response rate limiting started"
            );
        }
        let slot = &mut self.slots[at];
        slot.refused += 1;
        let slip = u64::from(self.config.slip);
        if slip > 0 && slot.refused.is_multiple_of(slip) {
            slot.slipped += 1;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// End the limited periods of prefixes whose buckets have refilled (a prefix that went
    /// quiet sends nothing that would end it). Called about once a second; a scan of the
    /// table only while some prefix is limited.
    pub(crate) fn sweep(&mut self, now: u64) {
        if self.limited == 0 {
            return;
        }
        let capacity = self.capacity();
        for i in 0..self.slots.len() {
            if self.slots[i].limited {
                self.refill(i, now);
                if self.slots[i].tokens >= capacity {
                    self.end(i, "under the rate again");
                }
            }
        }
    }

    fn refill(&mut self, i: usize, now: u64) {
        let capacity = self.capacity();
        let rate = u64::from(self.config.rate.max(1));
        let slot = &mut self.slots[i];
        // Cap the elapsed time at what fills an empty bucket, so the product cannot overflow.
        let fill_ns = capacity / rate + 1;
        let elapsed = now.saturating_sub(slot.stamp).min(fill_ns);
        slot.tokens = slot.tokens.saturating_add(elapsed * rate).min(capacity);
        slot.stamp = slot.stamp.max(now);
        if slot.limited && slot.tokens >= capacity {
            self.end(i, "under the rate again");
        }
    }

    fn end(&mut self, i: usize, why: &str) {
        let (v4, v6) = (self.config.ipv4_prefix, self.config.ipv6_prefix);
        let slot = &mut self.slots[i];
        if !slot.limited {
            return;
        }
        slot.limited = false;
        self.limited = self.limited.saturating_sub(1);
        let family = (slot.tag - 1) / 4;
        let class = match (slot.tag - 1) % 4 {
            0 => Class::Answer,
            1 => Class::Nxdomain,
            2 => Class::Referral,
            _ => Class::Error,
        };
        info!(
            prefix = %show(slot.prefix, family, if family == 0 { v4 } else { v6 }),
            class = class.name(),
            dropped = slot.refused - slot.slipped,
            slipped = slot.slipped,
            why,
            "response rate limiting stopped"
        );
    }

    fn capacity(&self) -> u64 {
        u64::from(self.config.burst.max(1)) * COST
    }

    fn prefix_len(&self, family: u8) -> u8 {
        if family == 0 {
            self.config.ipv4_prefix
        } else {
            self.config.ipv6_prefix
        }
    }

    /// The masked prefix of `ip` and its family (0: IPv4, 1: IPv6).
    fn prefix(&self, ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let len = u32::from(self.config.ipv4_prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                (u128::from(bits & mask), 0)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let len = u32::from(self.config.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                (bits & mask, 1)
            }
        }
    }

    fn index(&self, prefix: u128, tag: u8) -> usize {
        // A keyed multiplicative hash: the seed is random per table, so an attacker cannot
        // aim prefixes at one slot.
        let x = (prefix as u64) ^ ((prefix >> 64) as u64).rotate_left(17) ^ self.seed;
        let h = (x ^ u64::from(tag)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 24) as usize) % self.slots.len()
    }
}

/// `prefix/len` for the log line.
fn show(prefix: u128, family: u8, len: u8) -> String {
    if family == 0 {
        format!("{}/{len}", std::net::Ipv4Addr::from(prefix as u32))
    } else {
        format!("{}/{len}", std::net::Ipv6Addr::from(prefix))
    }
}

/// Rewrite the response in `out` as its truncated form: the header with TC set and the
/// question, no records (RFC 1035 §4.1.1; the slip of Knot and BIND).
pub(crate) fn truncate(out: &mut Vec<u8>) {
    const HEADER: usize = 12;
    if out.len() < HEADER {
        return;
    }
    let qdcount = u16::from_be_bytes([out[4], out[5]]);
    let mut end = HEADER;
    if qdcount > 0 {
        // The first name of a message is never compressed; stop at anything unexpected.
        while let Some(&len) = out.get(end) {
            if len == 0 {
                end += 1;
                break;
            }
            if len & 0xC0 != 0 {
                end += 2;
                break;
            }
            end += 1 + usize::from(len);
        }
        end += 4;
    }
    if end > out.len() {
        // Not a question we can delimit: send only the header.
        end = HEADER;
        out[4..6].copy_from_slice(&0u16.to_be_bytes());
    } else {
        out[4..6].copy_from_slice(&u16::from(qdcount > 0).to_be_bytes());
    }
    out.truncate(end);
    out[2] |= 0x02; // TC
    out[6..12].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn config(rate: u32, slip: u32) -> RrlConfig {
        RrlConfig {
            enabled: true,
            rate,
            burst: rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            whitelist: vec!["192.0.2.128/25".parse().expect("net")],
            table_size: 64,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn verdicts(l: &mut Limiter, src: &str, class: Class, n: usize, now: u64) -> [usize; 3] {
        let mut c = [0; 3];
        for _ in 0..n {
            match l.check(ip(src), class, now) {
                Verdict::Send => c[0] += 1,
                Verdict::Slip => c[1] += 1,
                Verdict::Drop => c[2] += 1,
            }
        }
        c
    }

    #[test]
    fn a_burst_then_the_rate_with_slip() {
        let mut l = Limiter::new(&config(10, 2));
        // A full bucket: 10 sent; the next 10 are limited, every second one slips.
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Answer, 20, 0),
            [10, 5, 5]
        );
        // 300 ms later: 3 tokens.
        assert_eq!(
            verdicts(&mut l, "198.51.100.77", Class::Answer, 5, 3 * SEC / 10),
            [3, 1, 1]
        );
    }

    #[test]
    fn slip_zero_drops_all_and_slip_one_truncates_all() {
        let mut l = Limiter::new(&config(1, 0));
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Answer, 5, 0),
            [1, 0, 4]
        );
        let mut l = Limiter::new(&config(1, 1));
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Answer, 5, 0),
            [1, 4, 0]
        );
    }

    #[test]
    fn prefixes_classes_and_the_whitelist_are_separate() {
        let mut l = Limiter::new(&config(2, 0));
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Answer, 4, 0),
            [2, 0, 2]
        );
        // Another /24, another class of the same /24: their own buckets.
        assert_eq!(
            verdicts(&mut l, "198.51.101.1", Class::Answer, 2, 0),
            [2, 0, 0]
        );
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Nxdomain, 2, 0),
            [2, 0, 0]
        );
        // Whitelisted: never limited.
        assert_eq!(
            verdicts(&mut l, "192.0.2.200", Class::Answer, 50, 0),
            [50, 0, 0]
        );
        // IPv6 by /56: ::1 and ::ff:1 share one bucket, the next /56 has its own.
        let a = "2001:db8:0:1::1";
        assert_eq!(verdicts(&mut l, a, Class::Error, 2, 0), [2, 0, 0]);
        assert_eq!(
            verdicts(&mut l, "2001:db8:0:ff::1", Class::Error, 1, 0),
            [0, 0, 1]
        );
        assert_eq!(
            verdicts(&mut l, "2001:db8:0:100::1", Class::Error, 1, 0),
            [1, 0, 0]
        );
    }

    #[test]
    fn limited_until_the_bucket_is_full_again() {
        let mut l = Limiter::new(&config(10, 2));
        verdicts(&mut l, "198.51.100.1", Class::Answer, 15, 0);
        assert_eq!(l.limited, 1);
        // Half a second: 5 tokens, not full: still limited (no stop/start flapping).
        l.sweep(SEC / 2);
        assert_eq!(l.limited, 1);
        // A full second with nothing: full again; the sweep ends the period.
        l.sweep(SEC / 2 + SEC);
        assert_eq!(l.limited, 0);
    }

    #[test]
    fn the_table_never_grows_under_a_spoofed_flood() {
        let mut l = Limiter::new(&config(5, 2));
        for i in 0..100_000u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(i << 8));
            l.check(src, Class::Answer, u64::from(i));
        }
        assert_eq!(l.slots.len(), 64);
        // A prefix seen after the flood gets its own full burst, and no more.
        assert_eq!(
            verdicts(&mut l, "203.0.113.9", Class::Answer, 10, SEC)[0],
            5
        );
    }

    #[test]
    fn disabled_sends_everything() {
        let mut c = config(1, 2);
        c.enabled = false;
        let mut l = Limiter::new(&c);
        assert_eq!(
            verdicts(&mut l, "198.51.100.1", Class::Answer, 9, 0),
            [9, 0, 0]
        );
        // Off costs no table; switching it on by a reload builds one and limits.
        assert!(l.slots.is_empty());
        c.enabled = true;
        l.reconfigure(&c);
        assert_eq!(l.slots.len(), c.table_size);
        assert!(verdicts(&mut l, "198.51.100.1", Class::Answer, 9, 0)[0] < 9);
    }

    #[test]
    fn truncation_keeps_header_and_question() {
        // ID 0x1234, QR AA, QD 1 AN 1: "a." A IN, then an answer record.
        let mut m = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        let question_end = m.len();
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        truncate(&mut m);
        assert_eq!(m.len(), question_end);
        assert_eq!(m[2], 0x86, "TC added, QR and AA kept");
        assert_eq!(&m[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
