//! Real capture in real network namespaces: a client pod and a captured pod joined by a veth
//! pair, Trellis's iptables rules in the captured pod, and plain sockets standing in for the
//! proxy's listeners. Needs root and iptables (CI installs iptables and runs as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use trellis_capture::{CaptureConfig, Family, Netns, iptables, netns, original_dst};

const CLIENT_IP: &str = "10.233.0.1";
const POD_IP: &str = "10.233.0.2";

fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let iptables = Command::new("iptables")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && iptables) {
        eprintln!("skipping: needs root and iptables (root: {root}, iptables: {iptables})");
    }
    root && iptables
}

/// Serves `count` connections: answers each with `LABEL original=ADDR` and closes it.
fn serve(listener: TcpListener, label: &'static str, count: usize) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < count && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    let is_v6 = stream.local_addr().is_ok_and(|a| a.is_ipv6());
                    let original = original_dst(&stream, is_v6)
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "none".into());
                    let _ = writeln!(stream, "{label} original={original}");
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept on {label}: {e}"),
            }
        }
    })
}

fn ask(addr: &str) -> String {
    let addr: SocketAddr = addr.parse().expect("addr");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.trim().to_string()
}

fn bind(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
}

#[test]
fn pod_traffic_is_captured_except_the_proxy_and_loopback() {
    if !can_run() {
        return;
    }
    let id = std::process::id();
    let client = Netns::create(&format!("tcap-c-{id}")).expect("client netns");
    let pod = Netns::create(&format!("tcap-p-{id}")).expect("pod netns");
    let (veth_client, veth_pod) = (format!("tcc{id}"), format!("tcp{id}"));
    let veth_client = &veth_client[..veth_client.len().min(15)];
    let veth_pod = &veth_pod[..veth_pod.len().min(15)];
    netns::run(
        "ip",
        &[
            "link",
            "add",
            veth_client,
            "type",
            "veth",
            "peer",
            "name",
            veth_pod,
        ],
    )
    .expect("veth");
    netns::run("ip", &["link", "set", veth_client, "netns", client.name()]).expect("move");
    netns::run("ip", &["link", "set", veth_pod, "netns", pod.name()]).expect("move");
    client
        .exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                veth_client,
            ],
        )
        .expect("addr");
    client
        .exec("ip", &["link", "set", veth_client, "up"])
        .expect("up");
    pod.exec(
        "ip",
        &["addr", "add", &format!("{POD_IP}/24"), "dev", veth_pod],
    )
    .expect("addr");
    pod.exec("ip", &["link", "set", veth_pod, "up"])
        .expect("up");

    pod.run(|| CaptureConfig::default().apply(Family::V4))
        .expect("enter pod")
        .expect("rules apply");

    let (outbound, inbound, app, health) = pod
        .run(|| {
            (
                bind("0.0.0.0:15001"),
                bind("0.0.0.0:15006"),
                bind("0.0.0.0:9080"),
                bind("0.0.0.0:15021"),
            )
        })
        .expect("enter pod");
    let direct = client
        .run(|| bind(&format!("{CLIENT_IP}:7000")))
        .expect("enter client");
    let servers = [
        serve(outbound, "outbound", 1),
        serve(inbound, "inbound", 1),
        serve(app, "app", 1),
        serve(health, "health", 1),
        serve(direct, "direct", 1),
    ];

    // The app's outbound connection is captured, and the proxy learns where it was going.
    let answer = pod
        .run(|| ask(&format!("{CLIENT_IP}:7000")))
        .expect("enter pod");
    assert_eq!(answer, format!("outbound original={CLIENT_IP}:7000"));

    // The same destination from the proxy's UID is not captured: it reaches the client pod.
    let script = format!("exec 3<>/dev/tcp/{CLIENT_IP}/7000 && cat <&3");
    let out = pod
        .run(move || {
            use std::os::unix::process::CommandExt;
            Command::new("bash")
                .args(["-c", &script])
                .uid(1337)
                .gid(1337)
                .output()
        })
        .expect("enter pod")
        .expect("bash runs");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.starts_with("direct original="),
        "proxy traffic must bypass capture: {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Inbound connections to the pod are captured, except the proxy's own health port.
    let answer = client
        .run(|| ask(&format!("{POD_IP}:9080")))
        .expect("enter client");
    assert_eq!(answer, format!("inbound original={POD_IP}:9080"));
    let answer = client
        .run(|| ask(&format!("{POD_IP}:15021")))
        .expect("enter client");
    assert!(answer.starts_with("health original="), "{answer}");

    // The app's own loopback traffic is left alone.
    let answer = pod.run(|| ask("127.0.0.1:9080")).expect("enter pod");
    assert!(answer.starts_with("app original="), "{answer}");

    for server in servers {
        server.join().expect("server thread");
    }

    // Removal leaves nothing behind.
    let leftover = pod
        .run(|| {
            iptables::remove(Family::V4);
            netns::run("iptables-save", &["-t", "nat"])
        })
        .expect("enter pod")
        .expect("iptables-save");
    assert!(!leftover.contains("TRELLIS"), "{leftover}");
    let names = (client.name().to_string(), pod.name().to_string());
    drop(client);
    drop(pod);
    let list = netns::run("ip", &["netns", "list"]).expect("list");
    assert!(
        !list.contains(&names.0) && !list.contains(&names.1),
        "namespaces left: {list}"
    );
}
