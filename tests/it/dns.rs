//! Each behaviour of an RFC-correct authoritative server, asserted over real UDP and TCP.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

async fn server() -> TestServer {
    TestServer::start(&demo_config("")).await
}

/// Ask over UDP and over TCP; both answers must agree on the assertions.
async fn both(s: &TestServer, q: &Message) -> [Message; 2] {
    [udp(s.addr, q).await, tcp(s.addr, q).await]
}

#[tokio::test]
async fn apex_soa_and_ns_are_authoritative() {
    let s = server().await;
    for m in both(
        &s,
        &query("registry.example.", RecordType::SOA, Some(edns(1232))),
    )
    .await
    {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "AA on an authoritative answer");
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(m.answers[0].data, RData::SOA(_)));
    }
    for m in both(
        &s,
        &query("registry.example.", RecordType::NS, Some(edns(1232))),
    )
    .await
    {
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 2);
        assert!(m.answers.iter().all(|r| matches!(r.data, RData::NS(_))));
        // Glue for both name servers (A and AAAA each) in the additional section.
        assert_eq!(m.additionals.len(), 4, "{m:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn negative_answers_carry_soa_with_negative_ttl() {
    let s = server().await;
    // SOA TTL 3600, MINIMUM 60: RFC 2308 §3 says min(60, 3600).
    for (name, rtype, rcode) in [
        (
            "nope.registry.example.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "www.registry.example.",
            RecordType::MX,
            ResponseCode::NoError,
        ),
    ] {
        for m in both(&s, &query(name, rtype, None)).await {
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert!(m.metadata.authoritative);
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities.len(), 1);
            let soa = &m.authorities[0];
            assert!(matches!(soa.data, RData::SOA(_)));
            assert_eq!(soa.ttl, 60, "negative TTL = min(SOA TTL, MINIMUM)");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn names_outside_our_zones_are_refused() {
    let s = server().await;
    for name in [
        "xregistry.example.",
        "www.xregistry.example.",
        "example.",
        "registry.example.com.",
        ".",
    ] {
        for m in both(&s, &query(name, RecordType::A, None)).await {
            assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
            assert!(!m.metadata.authoritative);
            assert!(m.answers.is_empty() && m.authorities.is_empty());
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn recursion_is_never_offered_and_rd_is_copied() {
    let s = server().await;
    for rd in [true, false] {
        let mut q = query("www.registry.example.", RecordType::A, None);
        q.metadata.recursion_desired = rd;
        for m in both(&s, &q).await {
            assert!(!m.metadata.recursion_available, "RA never set");
            assert_eq!(m.metadata.recursion_desired, rd, "RD copied");
            assert_eq!(m.metadata.id, 0x4242);
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn any_gets_one_rrset() {
    let s = server().await;
    // www has A and AAAA; RFC 8482 allows (and we send) one RRset.
    for m in both(&s, &query("www.registry.example.", RecordType::ANY, None)).await {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.answers.is_empty());
        let t = m.answers[0].record_type();
        assert!(
            m.answers.iter().all(|r| r.record_type() == t),
            "one RRset: {:?}",
            m.answers
        );
        assert_eq!(m.answers.len(), 1);
    }
    s.stop().await;
}

#[tokio::test]
async fn edns_is_echoed_with_our_payload_size() {
    let s = server().await;
    for m in both(
        &s,
        &query("www.registry.example.", RecordType::A, Some(edns(4096))),
    )
    .await
    {
        let e = m.edns.as_ref().expect("OPT in the answer");
        assert_eq!(e.max_payload(), 1232);
        assert_eq!(e.version(), 0);
    }
    // No OPT in the query: none in the answer.
    for m in both(&s, &query("www.registry.example.", RecordType::A, None)).await {
        assert!(m.edns.is_none());
    }
    // Unknown options are ignored and not echoed.
    let mut e = edns(1232);
    e.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            65001,
            vec![1, 2, 3],
        ));
    for m in both(&s, &query("www.registry.example.", RecordType::A, Some(e))).await {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert!(m.edns.as_ref().expect("opt").options().as_ref().is_empty());
    }
    // ECS on a static name: echoed with scope 0 (the answer does not depend on the client).
    let m = udp(
        s.addr,
        &query(
            "www.registry.example.",
            RecordType::A,
            Some(edns_ecs("192.0.2.0/24")),
        ),
    )
    .await;
    let cs = answer_ecs(&m).expect("ECS echoed");
    assert_eq!((cs.source_prefix(), cs.scope_prefix()), (24, 0));
    s.stop().await;
}

#[tokio::test]
async fn edns_version_1_gets_badvers() {
    let s = server().await;
    let mut e = edns(1232);
    e.set_version(1);
    for m in both(
        &s,
        &query("www.registry.example.", RecordType::A, Some(e.clone())),
    )
    .await
    {
        // hickory names rcode 16 BADSIG (BADVERS shares the number); compare the number.
        assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
        assert_eq!(m.edns.as_ref().expect("OPT").version(), 0);
        assert!(m.answers.is_empty());
    }
    s.stop().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let s = server().await;
    for e in [None, Some(edns(1232)), Some(edns(4096))] {
        let q = query("big.registry.example.", RecordType::TXT, e);
        let m = udp(s.addr, &q).await;
        assert!(m.metadata.truncation, "TC over UDP");
        assert!(m.answers.is_empty());
        let m = tcp(s.addr, &q).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 24, "the whole RRset over TCP");
    }
    // A raw check of the size limit: the UDP answer is within 1232 octets even when the client
    // offers 4096.
    let raw = udp_raw(
        s.addr,
        &query("big.registry.example.", RecordType::TXT, Some(edns(4096)))
            .to_vec()
            .expect("enc"),
    )
    .await
    .expect("answer");
    assert!(raw.len() <= 1232);
    s.stop().await;
}

#[tokio::test]
async fn pipelined_tcp_queries_each_get_their_answer() {
    let s = server().await;
    let names = [
        "www.registry.example.",
        "mail.registry.example.",
        "nope.registry.example.",
        "big.registry.example.",
    ];
    let packets: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut q = query(
                n,
                if i == 3 {
                    RecordType::TXT
                } else {
                    RecordType::A
                },
                None,
            );
            q.metadata.id = 100 + i as u16;
            q.to_vec().expect("enc")
        })
        .collect();
    let answers = tcp_raw(s.addr, &packets).await;
    for (i, a) in answers.iter().enumerate() {
        let m = Message::from_vec(a).expect("decode");
        assert_eq!(m.metadata.id, 100 + i as u16);
        assert_eq!(m.queries[0].name().to_ascii(), names[i]);
    }
    assert_eq!(
        Message::from_vec(&answers[2])
            .expect("d")
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(Message::from_vec(&answers[3]).expect("d").answers.len(), 24);
    s.stop().await;
}

#[tokio::test]
async fn question_case_is_echoed_exactly() {
    let s = server().await;
    let name = "WwW.rEgIsTrY.ExAmPlE.";
    for m in both(&s, &query(name, RecordType::A, None)).await {
        assert_eq!(m.queries[0].name().to_ascii(), name, "0x20 case preserved");
        assert_eq!(
            m.answers[0].name.to_ascii(),
            name,
            "answer owner in the query's case"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_opcodes_get_notimp() {
    let s = server().await;
    let q = query("www.registry.example.", RecordType::A, None)
        .to_vec()
        .expect("enc");
    for opcode in [1u8, 2, 3, 4, 5, 6, 15] {
        let mut p = q.clone();
        p[2] = (p[2] & 0x87) | (opcode << 3);
        let a = udp_raw(s.addr, &p).await.expect("answer");
        assert_eq!(a[3] & 0x0f, 4, "NOTIMP for opcode {opcode}");
        assert_eq!((a[2] >> 3) & 0x0f, opcode, "opcode echoed");
        assert_eq!(&a[..2], &p[..2], "id echoed");
    }
    s.stop().await;
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_are_dropped_never_a_panic() {
    let s = server().await;
    let good = query("www.registry.example.", RecordType::A, None)
        .to_vec()
        .expect("enc");

    // Specific malformations that must get FORMERR.
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0;
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut label_too_long = good.clone();
    label_too_long[12] = 64;
    for (what, p) in [
        ("no question", no_question),
        ("truncated question", truncated),
        ("qdcount 2", two_questions),
        ("label > 63", label_too_long),
    ] {
        let a = udp_raw(s.addr, &p)
            .await
            .unwrap_or_else(|| panic!("{what}: an answer"));
        assert_eq!(a[3] & 0x0f, 1, "{what}: FORMERR");
        assert!(a[2] & 0x80 != 0, "{what}: QR set");
    }
    // Too short for a header, or a response: dropped (no answer at all).
    assert!(udp_expect_silence(s.addr, &good[..5]).await);
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(udp_expect_silence(s.addr, &response).await);

    // Random garbage and random mutations of a valid query, over UDP and TCP: every one gets
    // an answer or is dropped, and the server keeps answering (a panic would kill the
    // socket task and the final query would go unanswered).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for i in 0..3000 {
        let mut p = if i % 2 == 0 {
            good.clone()
        } else {
            (0..(next() % 80) as usize).map(|_| next() as u8).collect()
        };
        if i % 2 == 0 {
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
        }
        sock.send_to(&p, s.addr).await.expect("send");
    }
    let frames: Vec<Vec<u8>> = (0..50)
        .map(|i| (0..(i * 3)).map(|_| next() as u8).collect())
        .collect();
    let mut stream = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    for f in &frames {
        use tokio::io::AsyncWriteExt;
        let mut framed = (f.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(f);
        stream.write_all(&framed).await.expect("write");
    }
    drop(stream);
    let m = udp(s.addr, &query("www.registry.example.", RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1, "still serving UDP");
    let m = tcp(s.addr, &query("www.registry.example.", RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1, "still serving TCP");
    s.stop().await;
}

#[tokio::test]
async fn bad_client_subnet_gets_formerr() {
    let s = server().await;
    let base = query("www.registry.example.", RecordType::A, Some(edns(1232)))
        .to_vec()
        .expect("enc");
    // Rewrite the OPT record (the last 11 octets) with hand-made option bodies.
    let with_options = |opts: &[u8]| {
        let mut p = base[..base.len() - 2].to_vec();
        p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        p.extend_from_slice(opts);
        p
    };
    let ecs = |family: u16, source: u8, addr: &[u8]| {
        let mut o = vec![0, 8];
        o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, 0]);
        o.extend_from_slice(addr);
        o
    };
    let mut duplicate = ecs(1, 24, &[192, 0, 2]);
    duplicate.extend(ecs(1, 24, &[198, 51, 100]));
    for (what, opts) in [
        ("bad family", ecs(7, 24, &[192, 0, 2])),
        ("prefix too long", ecs(1, 33, &[192, 0, 2, 1, 0])),
        ("host bits set", ecs(1, 16, &[192, 0, 2])),
        (
            "host bits set within the last octet",
            ecs(1, 20, &[192, 0, 31]),
        ),
        ("duplicate option", duplicate),
    ] {
        let a = udp_raw(s.addr, &with_options(&opts))
            .await
            .unwrap_or_else(|| panic!("{what}"));
        let m = Message::from_vec(&a).expect("decode");
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{what}");
        assert!(m.answers.is_empty(), "{what}");
    }
    // The good form of the same passes.
    let a = udp_raw(s.addr, &with_options(&ecs(1, 24, &[192, 0, 2])))
        .await
        .expect("ok");
    assert_eq!(
        Message::from_vec(&a).expect("d").metadata.response_code,
        ResponseCode::NoError
    );
    s.stop().await;
}

#[tokio::test]
async fn delegations_are_referrals_with_glue() {
    let s = server().await;
    for name in ["child.registry.example.", "www.child.registry.example."] {
        for m in both(&s, &query(name, RecordType::A, Some(edns(1232)))).await {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(
                !m.metadata.authoritative,
                "{name}: a referral is not authoritative"
            );
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities.len(), 1);
            assert!(matches!(m.authorities[0].data, RData::NS(_)));
            assert_eq!(m.additionals.len(), 2, "{name}: A and AAAA glue");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn cname_is_chased_and_wildcards_synthesise() {
    let s = server().await;
    for m in both(&s, &query("api.registry.example.", RecordType::A, None)).await {
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 2);
        assert!(matches!(m.answers[0].data, RData::CNAME(_)));
        assert!(matches!(m.answers[1].data, RData::A(_)));
    }
    for m in both(
        &s,
        &query("anything.wild.registry.example.", RecordType::A, None),
    )
    .await
    {
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].name.to_ascii(),
            "anything.wild.registry.example."
        );
    }
    // An empty non-terminal (the parent of ns.child is the delegation; use _tcp instead).
    let m = udp(
        s.addr,
        &query("_tcp.registry.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "empty non-terminal is NODATA"
    );
    assert!(m.answers.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn other_classes_and_transfers_are_refused() {
    let s = server().await;
    let mut q = query("www.registry.example.", RecordType::A, None);
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        udp(s.addr, &q).await.metadata.response_code,
        ResponseCode::Refused
    );
    let q = query("registry.example.", RecordType::AXFR, None);
    assert_eq!(
        tcp(s.addr, &q).await.metadata.response_code,
        ResponseCode::Refused
    );
    s.stop().await;
}
