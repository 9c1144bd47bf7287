//! Pods in network namespaces reach each other over the bridge, and nothing is left behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use trellis_capture::{PodNetwork, netns};

fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipping: network namespaces need root");
    }
    root
}

#[test]
fn three_pods_talk_over_the_bridge_and_vanish_on_drop() {
    if !can_run() {
        return;
    }
    let prefix = format!("tpod{}", std::process::id() % 10000);
    let mut net = PodNetwork::create(&prefix, [234, 1]).expect("network");
    for (name, host) in [("a", 11), ("b", 12), ("c", 13)] {
        net.add_pod(name, host).expect("pod");
    }
    let b = net.pod("b").expect("b");
    let listener = b
        .netns()
        .run(|| TcpListener::bind("0.0.0.0:9080"))
        .expect("enter")
        .expect("bind");
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, peer) = listener.accept().expect("accept");
            let _ = writeln!(stream, "hello {}", peer.ip());
        }
    });
    let target: SocketAddr = format!("{}:9080", b.ip).parse().expect("addr");
    for from in ["a", "c"] {
        let pod = net.pod(from).expect("pod");
        let answer = pod
            .netns()
            .run(move || {
                let mut s =
                    TcpStream::connect_timeout(&target, Duration::from_secs(3)).expect("connect");
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                text
            })
            .expect("enter");
        assert_eq!(answer.trim(), format!("hello {}", pod.ip));
    }
    server.join().expect("server");
    drop(net);
    let left = netns::run("ip", &["netns", "list"]).expect("list");
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
}
