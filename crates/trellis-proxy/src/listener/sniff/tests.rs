use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;

fn both(bytes: &[u8]) -> Classified {
    classify(bytes, true, true)
}

#[test]
fn http1_request_lines_are_detected_by_version() {
    assert_eq!(
        both(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Classified::Done(Detected::Http11)
    );
    assert_eq!(
        both(b"POST /x?y=1 HTTP/1.0\r\n"),
        Classified::Done(Detected::Http10)
    );
    assert_eq!(
        both(b"OPTIONS * HTTP/1.1\n"),
        Classified::Done(Detected::Http11)
    );
}

#[test]
fn every_prefix_of_a_request_line_waits_for_more() {
    let line = b"GET /reviews HTTP/1.1\r\n";
    for n in 1..line.len() {
        assert_eq!(
            both(&line[..n]),
            Classified::NeedMore,
            "{:?}",
            String::from_utf8_lossy(&line[..n])
        );
    }
    assert_eq!(both(line), Classified::Done(Detected::Http11));
}

#[test]
fn the_h2_preface_is_h2c_and_its_prefixes_wait() {
    for n in 1..H2_PREFACE.len() {
        assert_eq!(both(&H2_PREFACE[..n]), Classified::NeedMore, "{n}");
    }
    assert_eq!(both(H2_PREFACE), Classified::Done(Detected::H2c));
    // A different second line is not HTTP/2 (nor HTTP/1: version 2.0).
    assert_eq!(
        both(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
        Classified::Done(Detected::Tcp)
    );
}

#[test]
fn tls_needs_the_tls_inspector() {
    let hello = [0x16, 0x03, 0x01, 0x02, 0x00];
    assert_eq!(both(&hello[..1]), Classified::NeedMore);
    assert_eq!(both(&hello), Classified::Done(Detected::Tls));
    assert_eq!(
        classify(&hello, false, true),
        Classified::Done(Detected::Tcp)
    );
    // Only the TLS inspector: anything else is decided on the first byte.
    assert_eq!(classify(b"G", true, false), Classified::Done(Detected::Tcp));
}

#[test]
fn garbage_and_server_style_lines_are_opaque() {
    for bytes in [
        &b"\x00\x01\x02"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"EHLO client.example\r\n",
        b"get / HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.1 extra\r\n",
        b"GET /\x01 HTTP/1.1\r\n",
        b"AVERYLONGMETHODNAMEXXXXXXXX / HTTP/1.1\r\n",
    ] {
        assert_eq!(
            both(bytes),
            Classified::Done(Detected::Tcp),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn an_endless_request_line_is_opaque_at_the_cap() {
    let mut long = b"GET /".to_vec();
    long.resize(MAX_PEEK - 1, b'a');
    assert_eq!(both(&long), Classified::NeedMore);
    long.push(b'a');
    assert_eq!(both(&long), Classified::Done(Detected::Tcp));
}

#[test]
fn labels_and_chain_keys() {
    assert_eq!(Detected::Http10.label(), "http1");
    assert_eq!(Detected::Http11.application_protocol(), Some("http/1.1"));
    assert_eq!(Detected::H2c.application_protocol(), Some("h2c"));
    assert_eq!(Detected::Tls.transport(), TransportProtocol::Tls);
    assert_eq!(Detected::Tcp.application_protocol(), None);
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (client, server)
}

#[tokio::test]
async fn a_request_line_in_pieces_is_detected_and_left_in_the_socket() {
    let (mut client, server) = pair().await;
    let writer = tokio::spawn(async move {
        for piece in [&b"GE"[..], b"T /x HT", b"TP/1.1\r", b"\n\r\n"] {
            client.write_all(piece).await.ok();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
    });
    let got = inspect(
        &server,
        true,
        true,
        None,
        Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert_eq!(got, Inspection::Detected(Detected::Http11));
    let _client = writer.await.expect("writer");
    let mut buf = [0u8; 4];
    let n = server.peek(&mut buf).await.expect("peek");
    assert_eq!(&buf[..n], b"GET ");
}

#[tokio::test]
async fn a_silent_client_is_reported_after_the_window() {
    let (_client, server) = pair().await;
    let start = Instant::now();
    let got = inspect(
        &server,
        true,
        true,
        Some(SERVER_FIRST_WINDOW),
        start + Duration::from_secs(5),
    )
    .await;
    assert_eq!(got, Inspection::Silent);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_empty_connection_closed_early_is_gone_at_once() {
    let (client, server) = pair().await;
    drop(client);
    let start = Instant::now();
    let got = inspect(&server, true, true, None, start + Duration::from_secs(5)).await;
    assert_eq!(got, Inspection::Gone("closed"));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stalled_partial_line_times_out() {
    let (mut client, server) = pair().await;
    client.write_all(b"GET /").await.expect("write");
    let got = inspect(
        &server,
        true,
        true,
        None,
        Instant::now() + Duration::from_millis(100),
    )
    .await;
    assert_eq!(got, Inspection::Gone("timeout"));
}

#[tokio::test]
async fn the_server_greeting_wins_the_race_over_a_silent_client() {
    let (_client, server) = pair().await;
    let (mut app, mut upstream) = pair().await;
    app.write_all(b"220 smtp ready\r\n").await.expect("greet");
    match race(&server, &mut upstream, true, true, Duration::from_secs(5)).await {
        Race::ServerFirst(greeting) => assert_eq!(greeting, b"220 smtp ready\r\n"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_late_client_wins_the_race_over_a_silent_server() {
    let (mut client, server) = pair().await;
    let (_app, mut upstream) = pair().await;
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    match race(&server, &mut upstream, true, true, Duration::from_secs(5)).await {
        Race::ClientFirst(d) => assert_eq!(d, Detected::Http11),
        other => panic!("{other:?}"),
    }
}
