//! Queries through `dig` (the real client a user types) and a parser for its output.
//!
//! Every query names its server, its client source address (`dig -b`) and its transport, so
//! a failed check can say exactly what was asked, of whom, from where, and what came back.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// One query to run with `dig`.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    /// The server asked (`@server`).
    pub(crate) server: Ipv4Addr,
    /// The client source address (`-b`).
    pub(crate) client: Ipv4Addr,
    /// The query name.
    pub(crate) name: String,
    /// The query type (`A`, `AAAA`, `TXT`, ...).
    pub(crate) qtype: &'static str,
    /// TCP instead of UDP (`+tcp`).
    pub(crate) tcp: bool,
    /// An EDNS Client Subnet option to send (`+subnet=...`).
    pub(crate) subnet: Option<&'static str>,
    /// The EDNS UDP buffer size to advertise (`+bufsize=`).
    pub(crate) bufsize: Option<u16>,
    /// Show a truncated UDP answer instead of retrying over TCP (`+ignore`).
    pub(crate) ignore_tc: bool,
    /// Ask without the RD bit (`+norecurse`), for queries sent straight to an authoritative.
    pub(crate) norec: bool,
}

impl Query {
    /// A recursive UDP query with dig's defaults.
    pub(crate) fn new(server: Ipv4Addr, client: Ipv4Addr, name: &str, qtype: &'static str) -> Self {
        Self {
            server,
            client,
            name: name.to_owned(),
            qtype,
            tcp: false,
            subnet: None,
            bufsize: None,
            ignore_tc: false,
            norec: false,
        }
    }

    /// The same query over TCP when `tcp` is true.
    pub(crate) fn tcp(mut self, tcp: bool) -> Self {
        self.tcp = tcp;
        self
    }

    /// The transport as a word for messages.
    pub(crate) fn transport(&self) -> &'static str {
        if self.tcp { "tcp" } else { "udp" }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-b".to_owned(),
            self.client.to_string(),
            format!("@{}", self.server),
            self.name.clone(),
            self.qtype.to_owned(),
            "+tries=1".to_owned(),
            "+time=5".to_owned(),
            "+nocmd".to_owned(),
            "+noall".to_owned(),
            "+comments".to_owned(),
            "+answer".to_owned(),
            "+authority".to_owned(),
            "+nostats".to_owned(),
            "+nocookie".to_owned(),
        ];
        if self.tcp {
            args.push("+tcp".to_owned());
        }
        if let Some(subnet) = self.subnet {
            args.push(format!("+subnet={subnet}"));
        }
        if let Some(size) = self.bufsize {
            args.push(format!("+bufsize={size}"));
        }
        if self.ignore_tc {
            args.push("+ignore".to_owned());
        }
        if self.norec {
            args.push("+norecurse".to_owned());
        }
        args
    }

    /// The command line, for messages (copy-pasteable into a shell).
    pub(crate) fn cmdline(&self) -> String {
        format!("dig {}", self.args().join(" "))
    }

    /// Runs the query. A timeout or an unparsable reply is a `Reply` with `status: None`.
    pub(crate) fn run(&self, dig: &PathBuf) -> Reply {
        let output = Command::new(dig).args(self.args()).output();
        let raw = match output {
            Ok(out) => {
                let mut raw = String::from_utf8_lossy(&out.stdout).into_owned();
                raw.push_str(&String::from_utf8_lossy(&out.stderr));
                raw
            }
            Err(e) => format!("could not run {}: {e}", dig.display()),
        };
        Reply::parse(raw)
    }
}

/// One resource record as dig prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rr {
    /// Owner name, lower-cased.
    pub(crate) name: String,
    /// TTL in seconds.
    pub(crate) ttl: u32,
    /// Record type (`A`, `SOA`, ...).
    pub(crate) rtype: String,
    /// Record data as dig prints it; for TXT the strings joined without quotes.
    pub(crate) rdata: String,
}

/// An EDNS Client Subnet option in a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ecs {
    /// The address in the option.
    pub(crate) addr: std::net::IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub(crate) source: u8,
    /// SCOPE PREFIX-LENGTH.
    pub(crate) scope: u8,
}

/// What dig printed, parsed.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// RCODE name (`NOERROR`, `NXDOMAIN`, ...); `None` when no answer came (timeout).
    pub(crate) status: Option<String>,
    /// Header flags (`qr`, `aa`, `tc`, `rd`, `ra`, ...).
    pub(crate) flags: Vec<String>,
    /// Answer section.
    pub(crate) answer: Vec<Rr>,
    /// Authority section.
    pub(crate) authority: Vec<Rr>,
    /// ECS option in the reply, if any.
    pub(crate) ecs: Option<Ecs>,
    /// The full dig output.
    pub(crate) raw: String,
}

impl Reply {
    /// Parses dig's `+noall +comments +answer +authority` output.
    pub(crate) fn parse(raw: String) -> Self {
        let mut reply = Reply {
            status: None,
            flags: Vec::new(),
            answer: Vec::new(),
            authority: Vec::new(),
            ecs: None,
            raw: String::new(),
        };
        #[derive(PartialEq)]
        enum Section {
            Other,
            Answer,
            Authority,
        }
        let mut section = Section::Other;
        for line in raw.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
                // a retry over TCP prints a second header: the last one wins
                reply.answer.clear();
                reply.authority.clear();
                reply.ecs = None;
                reply.status = rest
                    .split(',')
                    .find_map(|part| part.trim().strip_prefix("status: "))
                    .map(str::to_owned);
                continue;
            }
            if let Some(rest) = line.strip_prefix(";; flags:") {
                let flags = rest.split(';').next().unwrap_or("");
                reply.flags = flags.split_whitespace().map(str::to_owned).collect();
                continue;
            }
            if let Some(rest) = line.strip_prefix("; CLIENT-SUBNET: ") {
                reply.ecs = parse_ecs(rest.trim());
                continue;
            }
            if line.starts_with(";; ANSWER SECTION") {
                section = Section::Answer;
                continue;
            }
            if line.starts_with(";; AUTHORITY SECTION") {
                section = Section::Authority;
                continue;
            }
            if line.starts_with(';') {
                if line.starts_with(";; ") && line.ends_with("SECTION:") {
                    section = Section::Other;
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let Some(rr) = parse_rr(line) else { continue };
            match section {
                Section::Answer => reply.answer.push(rr),
                Section::Authority => reply.authority.push(rr),
                Section::Other => {}
            }
        }
        reply.raw = raw;
        reply
    }

    /// The rdata of the answer records of one type, sorted.
    pub(crate) fn answer_data(&self, rtype: &str) -> Vec<String> {
        let mut data: Vec<String> = self
            .answer
            .iter()
            .filter(|rr| rr.rtype.eq_ignore_ascii_case(rtype))
            .map(|rr| rr.rdata.clone())
            .collect();
        data.sort();
        data
    }

    /// Whether the header has this flag.
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// A one-line summary: status, flags, answer records, authority types, ECS.
    pub(crate) fn summary(&self) -> String {
        let Some(status) = &self.status else {
            let last = self
                .raw
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return format!("no reply ({})", last.trim());
        };
        let answer: Vec<String> = self
            .answer
            .iter()
            .map(|rr| format!("{} {} {}", rr.rtype, rr.ttl, short(&rr.rdata)))
            .collect();
        let authority: Vec<String> = self
            .authority
            .iter()
            .map(|rr| format!("{} {}", rr.name, rr.rtype))
            .collect();
        let ecs = match self.ecs {
            Some(e) => format!(" ecs={}/{}/{}", e.addr, e.source, e.scope),
            None => String::new(),
        };
        format!(
            "{status} flags=[{}] answer=[{}] authority=[{}]{ecs}",
            self.flags.join(" "),
            answer.join(", "),
            authority.join(", ")
        )
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())
    }
}

fn short(s: &str) -> String {
    if s.len() > 60 {
        format!("{}...({} chars)", &s[..40], s.len())
    } else {
        s.to_owned()
    }
}

/// `127.0.6.16/28/28` -> address, source, scope.
fn parse_ecs(text: &str) -> Option<Ecs> {
    let mut parts = text.split('/');
    let addr = parts.next()?.parse().ok()?;
    let source = parts.next()?.parse().ok()?;
    let scope = parts.next()?.parse().ok()?;
    Some(Ecs {
        addr,
        source,
        scope,
    })
}

/// `name ttl class type rdata...`
fn parse_rr(line: &str) -> Option<Rr> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?.to_ascii_lowercase();
    let ttl = fields.next()?.parse().ok()?;
    let _class = fields.next()?;
    let rtype = fields.next()?.to_owned();
    let rest: Vec<&str> = fields.collect();
    let rdata = if rtype == "TXT" {
        rest.iter()
            .map(|s| s.trim_matches('"'))
            .collect::<Vec<_>>()
            .join("")
    } else {
        rest.join(" ").to_ascii_lowercase()
    };
    Some(Rr {
        name,
        ttl,
        rtype,
        rdata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_retry_over_tcp_and_ecs() {
        let raw = "\
;; Truncated, retrying in TCP mode.
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 41251
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 1, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
; CLIENT-SUBNET: 127.0.6.16/28/28
;; ANSWER SECTION:
Contoso.registry.example. 2\tIN\tA\t192.0.2.20

;; AUTHORITY SECTION:
registry.example.\t5\tIN\tSOA\tns1.registry.example. hostmaster.registry.example. 1 3600 600 86400 5
";
        let reply = Reply::parse(raw.into());
        assert_eq!(reply.status.as_deref(), Some("NOERROR"));
        assert!(reply.has_flag("aa"));
        assert_eq!(reply.answer_data("A"), vec!["192.0.2.20"]);
        assert_eq!(reply.answer[0].name, "contoso.registry.example.");
        assert_eq!(reply.authority[0].rtype, "SOA");
        let ecs = reply.ecs.expect("ECS option");
        assert_eq!((ecs.source, ecs.scope), (28, 28));
    }

    #[test]
    fn a_timeout_has_no_status() {
        let raw = ";; communications error to 127.0.5.3#53: timed out\n";
        let reply = Reply::parse(raw.into());
        assert_eq!(reply.status, None);
        assert!(reply.summary().contains("timed out"));
    }
}
