//! Real capture in real network namespaces: a client pod and a captured pod joined by a veth
//! pair, Trellis's iptables rules in the captured pod, and plain sockets standing in for the
//! proxy's listeners — over IPv4 (`iptables`, `SO_ORIGINAL_DST`) and IPv6 (`ip6tables`,
//! `IP6T_SO_ORIGINAL_DST`). Needs root and iptables (CI installs iptables and runs as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use trellis_capture::{CaptureConfig, Family, Netns, iptables, netns, original_dst};

/// One address family's view of the test: its tool, addresses and how to write them.
struct Net {
    family: Family,
    client_ip: &'static str,
    pod_ip: &'static str,
    prefix: u8,
    any: &'static str,
    loopback: &'static str,
    /// Namespace names must differ per family: both tests may run at once.
    tag: &'static str,
}

const V4: Net = Net {
    family: Family::V4,
    client_ip: "10.233.0.1",
    pod_ip: "10.233.0.2",
    prefix: 24,
    any: "0.0.0.0",
    loopback: "127.0.0.1",
    tag: "4",
};

const V6: Net = Net {
    family: Family::V6,
    client_ip: "fd00:233::1",
    pod_ip: "fd00:233::2",
    prefix: 64,
    any: "::",
    loopback: "::1",
    tag: "6",
};

/// `ip:port`, bracketed for IPv6.
fn at(ip: &str, port: u16) -> String {
    SocketAddr::new(ip.parse().expect("ip"), port).to_string()
}

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
    if can_run() {
        capture_round_trip(&V4);
    }
}

#[test]
fn ipv6_pod_traffic_is_captured_with_its_original_destination() {
    if can_run() {
        capture_round_trip(&V6);
    }
}

fn capture_round_trip(net: &Net) {
    let Net {
        family,
        client_ip,
        pod_ip,
        prefix,
        any,
        loopback,
        tag,
    } = *net;
    let id = std::process::id();
    let client = Netns::create(&format!("tcap{tag}-c-{id}")).expect("client netns");
    let pod = Netns::create(&format!("tcap{tag}-p-{id}")).expect("pod netns");
    let (veth_client, veth_pod) = (format!("tc{tag}{id}"), format!("tp{tag}{id}"));
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
    // `nodad`: an IPv6 address is usable at once instead of after duplicate address detection.
    let addr_args = |ip: &str, dev: &str| -> Vec<String> {
        let mut args = vec!["addr".into(), "add".into(), format!("{ip}/{prefix}")];
        args.extend(["dev".into(), dev.to_string()]);
        if family == Family::V6 {
            args.push("nodad".into());
        }
        args
    };
    let client_addr = addr_args(client_ip, veth_client);
    let client_addr: Vec<&str> = client_addr.iter().map(String::as_str).collect();
    client.exec("ip", &client_addr).expect("addr");
    client
        .exec("ip", &["link", "set", veth_client, "up"])
        .expect("up");
    let pod_addr = addr_args(pod_ip, veth_pod);
    let pod_addr: Vec<&str> = pod_addr.iter().map(String::as_str).collect();
    pod.exec("ip", &pod_addr).expect("addr");
    pod.exec("ip", &["link", "set", veth_pod, "up"])
        .expect("up");

    pod.run(move || CaptureConfig::default().apply(family))
        .expect("enter pod")
        .expect("rules apply");

    let (outbound, inbound, app, health) = pod
        .run(move || {
            (
                bind(&at(any, 15001)),
                bind(&at(any, 15006)),
                bind(&at(any, 9080)),
                bind(&at(any, 15021)),
            )
        })
        .expect("enter pod");
    let direct = client
        .run(move || bind(&at(client_ip, 7000)))
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
        .run(move || ask(&at(client_ip, 7000)))
        .expect("enter pod");
    assert_eq!(answer, format!("outbound original={}", at(client_ip, 7000)));

    // The same destination from the proxy's UID is not captured: it reaches the client pod.
    let script = format!("exec 3<>/dev/tcp/{client_ip}/7000 && cat <&3");
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
        .run(move || ask(&at(pod_ip, 9080)))
        .expect("enter client");
    assert_eq!(answer, format!("inbound original={}", at(pod_ip, 9080)));
    let answer = client
        .run(move || ask(&at(pod_ip, 15021)))
        .expect("enter client");
    assert!(answer.starts_with("health original="), "{answer}");

    // The app's own loopback traffic is left alone.
    let answer = pod
        .run(move || ask(&at(loopback, 9080)))
        .expect("enter pod");
    assert!(answer.starts_with("app original="), "{answer}");

    for server in servers {
        server.join().expect("server thread");
    }

    // Removal leaves nothing behind.
    let leftover = pod
        .run(move || {
            iptables::remove(family);
            netns::run(&format!("{}-save", family.tool()), &["-t", "nat"])
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
