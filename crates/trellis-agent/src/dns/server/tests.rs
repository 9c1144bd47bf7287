use std::net::Ipv4Addr;

use hickory_proto::op::Query;
use hickory_proto::rr::Name;
use trellis_xds::nds::{NameInfo, NameTable, REGISTRY_KUBERNETES};

use super::*;

fn server(upstreams: Vec<SocketAddr>) -> DnsServer {
    let server = DnsServer::new(upstreams);
    let mut table = NameTable::default();
    table.table.insert(
        "reviews.default.svc.cluster.local".into(),
        NameInfo {
            ips: vec!["10.0.0.200".into()],
            registry: REGISTRY_KUBERNETES.into(),
            shortname: "reviews".into(),
            namespace: "default".into(),
        },
    );
    server.set_table(DnsTable::from_name_table(&table, "default"));
    server
}

fn query(id: u16, name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            record_type,
        ));
    message.to_vec().expect("encode")
}

fn parse(answer: Option<Vec<u8>>) -> Message {
    Message::from_vec(&answer.expect("an answer")).expect("a DNS message")
}

#[tokio::test]
async fn names_in_the_table_are_answered_locally() {
    let server = server(Vec::new());
    let answer = parse(
        server
            .answer(&query(7, "reviews.", RecordType::A), Transport::Udp)
            .await,
    );
    assert_eq!(answer.id(), 7);
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert_eq!(answer.answers().len(), 1);
    assert_eq!(answer.answers()[0].ttl(), TTL_SECONDS);
    assert_eq!(
        answer.answers()[0].data(),
        &RData::A(A(Ipv4Addr::new(10, 0, 0, 200)))
    );
    // AAAA of an IPv4-only name: no data, not an error.
    let answer = parse(
        server
            .answer(
                &query(8, "reviews.default.svc.cluster.local.", RecordType::AAAA),
                Transport::Tcp,
            )
            .await,
    );
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    assert!(answer.answers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn queries_wait_for_the_first_table_then_go_upstream() {
    let server = DnsServer::new(Vec::new());
    let started = tokio::time::Instant::now();
    let answer = parse(
        server
            .answer(&query(5, "reviews.", RecordType::A), Transport::Udp)
            .await,
    );
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    assert!(started.elapsed() >= FIRST_TABLE_WAIT);
}

#[tokio::test]
async fn other_names_fail_without_an_upstream() {
    let before = stats().get(Outcome::failed);
    let server = server(Vec::new());
    let answer = parse(
        server
            .answer(&query(9, "example.org.", RecordType::A), Transport::Udp)
            .await,
    );
    assert_eq!(answer.id(), 9);
    assert_eq!(answer.response_code(), ResponseCode::ServFail);
    assert!(stats().get(Outcome::failed) > before);
}

#[tokio::test]
async fn other_names_are_relayed_to_the_upstream() -> std::io::Result<()> {
    // A real upstream on loopback that answers every query with 192.0.2.1.
    let upstream = UdpSocket::bind("127.0.0.1:0").await?;
    let address = upstream.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut response = Message::new();
            response
                .set_id(request.id())
                .set_message_type(MessageType::Response)
                .add_queries(request.queries().iter().cloned());
            if let Some(q) = request.queries().first() {
                response.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
            }
            let Ok(bytes) = response.to_vec() else {
                continue;
            };
            let _ = upstream.send_to(&bytes, from).await;
        }
    });
    let server = server(vec![address]);
    let answer = parse(
        server
            .answer(&query(10, "example.org.", RecordType::A), Transport::Udp)
            .await,
    );
    assert_eq!(answer.id(), 10);
    assert_eq!(answer.answers().len(), 1);
    assert_eq!(
        answer.answers()[0].ttl(),
        60,
        "the upstream's answer, as it was"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_are_dropped() {
    let server = server(Vec::new());
    let before = stats().get(Outcome::malformed);
    // A header claiming one question, followed by garbage.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 7]);
    let answer = parse(server.answer(&garbage, Transport::Udp).await);
    assert_eq!(answer.id(), 0x1234);
    assert_eq!(answer.response_code(), ResponseCode::FormErr);
    assert!(server.answer(&[1, 2, 3], Transport::Udp).await.is_none());
    assert!(server.answer(&[], Transport::Tcp).await.is_none());
    assert!(stats().get(Outcome::malformed) >= before + 3);
    // And the server still answers.
    let answer = parse(
        server
            .answer(&query(11, "reviews.", RecordType::A), Transport::Udp)
            .await,
    );
    assert_eq!(answer.answers().len(), 1);
}

#[tokio::test]
async fn udp_and_tcp_listeners_answer() -> std::io::Result<()> {
    let server = Arc::new(server(Vec::new()));
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let address = udp.local_addr()?;
    let tcp = TcpListener::bind(address).await?;
    tokio::spawn(server.clone().serve_udp(udp));
    tokio::spawn(server.serve_tcp(tcp));
    let over_udp = upstream::over_udp(
        &query(12, "reviews.", RecordType::A),
        address,
        Duration::from_secs(2),
    )
    .await?;
    assert_eq!(parse(Some(over_udp)).answers().len(), 1);
    let over_tcp = upstream::over_tcp(
        &query(13, "reviews.", RecordType::A),
        address,
        Duration::from_secs(2),
    )
    .await?;
    assert_eq!(parse(Some(over_tcp)).answers().len(), 1);
    Ok(())
}
