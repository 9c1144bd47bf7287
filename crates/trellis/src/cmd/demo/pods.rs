//! The demo in pod mode (as root): the same Bookinfo-like mesh, but every app and sidecar in a
//! network namespace of its own with Istio's iptables capture, through the pod-mesh launcher.
//! Traffic comes from the `client` pod with an unmodified client: curl, calling
//! `http://productpage:9080/productpage` by name, captured by that pod's sidecar.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use trellis_testkit::mesh::Dataplane;
use trellis_testkit::pods::{CLIENT_POD, PodMesh, PodOptions};

use super::traffic::ReviewsCounter;
use super::{DESTINATION_RULES, REVIEWS_90_10, verdict};

/// The namespace prefix of the demo's pods (`trellis pods down --prefix demo` cleans up).
const PREFIX: &str = "demo";
/// What curl prints after each answer, to split the answers apart.
const MARKER: &str = "--trellis-demo-status ";

/// Runs the demo as pods.
pub async fn run(
    base: Ipv4Addr,
    dataplane: Dataplane,
    check: bool,
    requests: usize,
) -> anyhow::Result<ExitCode> {
    let run_dir = std::env::temp_dir().join(format!("trellis-demo-{}", std::process::id()));
    let trellis = std::env::current_exe().context("locating the trellis binary")?;
    let spec = super::spec(base, dataplane);
    let options = PodOptions::new(trellis, &run_dir, PREFIX);
    println!(
        "Starting the demo pods ({dataplane} sidecars, namespaces {PREFIX}-*, pod network 10.{}.{}.0/24) ...",
        base.octets()[1],
        base.octets()[2]
    );
    let started = Instant::now();
    let mesh = tokio::task::spawn_blocking(move || PodMesh::start(spec, options))
        .await
        .context("the start task failed")?
        .with_context(|| format!("starting the demo pods (logs in {})", run_dir.display()))?;
    println!(
        "  pods up in {:.1}s: control plane, client, {} workload pods (app + captured sidecar each)",
        started.elapsed().as_secs_f64(),
        mesh.spec().workloads.len()
    );
    let mut mesh = mesh;
    let outcome = if check {
        check_split(&mut mesh, requests)
    } else {
        interactive(&mut mesh).await
    };
    println!("Stopping the demo: removing the pods ...");
    tokio::task::spawn_blocking(move || mesh.shutdown())
        .await
        .context("the stop task failed")?;
    println!("All demo pods and processes are gone.");
    outcome
}

fn apply_routing(mesh: &mut PodMesh, with_split: bool) -> anyhow::Result<()> {
    mesh.apply("destination-rules.yaml", DESTINATION_RULES)?;
    if with_split {
        mesh.apply("reviews.yaml", REVIEWS_90_10)?;
    }
    tokio::task::block_in_place(|| mesh.wait_synced(Instant::now() + Duration::from_secs(30)))?;
    Ok(())
}

fn check_split(mesh: &mut PodMesh, requests: usize) -> anyhow::Result<ExitCode> {
    println!("Applying DestinationRules and the 90/10 VirtualService for reviews ...");
    apply_routing(mesh, true)?;
    println!(
        "Sending {requests} requests with curl from the {CLIENT_POD} pod to http://productpage:9080 ..."
    );
    let mut counter = ReviewsCounter::tally();
    tokio::task::block_in_place(|| curl_productpage(mesh, requests, None, &mut counter))?;
    let nacks = tokio::task::block_in_place(|| mesh.nack_count());
    let ok = verdict(&counter, nacks);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn interactive(mesh: &mut PodMesh) -> anyhow::Result<ExitCode> {
    apply_routing(mesh, false)?;
    let config_dir = mesh.config_dir().display().to_string();
    let exec = format!("sudo trellis pods exec --prefix {PREFIX}");
    println!();
    println!(
        "The pods are running. Where to look (from inside a pod: the pod network is private):"
    );
    for pod in mesh.pods() {
        println!("  {:<20} {}", pod.name, pod.ip);
    }
    println!("  call productpage    {exec} {CLIENT_POD} -- curl -s http://productpage:9080/");
    println!(
        "  proxy sync status   {exec} {CLIENT_POD} -- curl -s http://{}/debug/syncz",
        mesh.monitoring_address()
    );
    println!("  a sidecar's admin   {exec} reviews -- curl -s http://127.0.0.1:15000/config_dump");
    println!("  config directory    {config_dir}   (edit it: changes apply live)");
    println!("  logs                {}", mesh.run_dir().display());
    println!();
    println!("Try a canary: send 10% of reviews traffic to v2 —");
    println!("  cat > {config_dir}/reviews.yaml <<'EOF'\n{REVIEWS_90_10}EOF");
    println!();
    println!(
        "Traffic: curl from the {CLIENT_POD} pod, 10 requests/s to productpage; the reviews version each one reached, every 3 s (Ctrl-C to stop):"
    );
    let mut counter = ReviewsCounter::tally();
    let stop = crate::signals::shutdown();
    tokio::pin!(stop);
    loop {
        counter.reset();
        let window =
            tokio::task::block_in_place(|| curl_productpage(mesh, 30, Some(10), &mut counter));
        if let Err(e) = window {
            println!("  curl failed: {e:#}");
        } else {
            println!("  {}", counter.summary());
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        mesh.check_processes()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `count` GETs of productpage by curl in the client pod (URL globbing: one process, one
/// connection), at most `rate` per second; every answer is recorded.
fn curl_productpage(
    mesh: &PodMesh,
    count: usize,
    rate: Option<u32>,
    counter: &mut ReviewsCounter,
) -> anyhow::Result<()> {
    let url = format!("http://productpage:9080/productpage?n=[1-{}]", count.max(1));
    let mut cmd = mesh.command(CLIENT_POD, None, "curl")?;
    cmd.args(["-sS", "--max-time", "5", "-w"])
        .arg(format!("\n{MARKER}%{{http_code}}\n"));
    if let Some(rate) = rate {
        cmd.arg("--rate").arg(format!("{rate}/s"));
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running curl in the client pod")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answers = split_answers(&text);
    if answers.is_empty() {
        anyhow::bail!(
            "curl printed nothing: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for (status, body) in answers {
        counter.record(status, &body);
    }
    Ok(())
}

/// Splits curl's output into `(status, body)` per request (status 0: no answer).
fn split_answers(text: &str) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        match line.strip_prefix(MARKER) {
            Some(code) => {
                out.push((code.trim().parse().unwrap_or(0), std::mem::take(&mut body)));
            }
            None => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_curl_output_per_request() {
        let text = format!("{{\"a\":1}}\n{MARKER}200\n\n{MARKER}000\nno\n{MARKER}503\n");
        let answers = split_answers(&text);
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0], (200, "{\"a\":1}\n".to_string()));
        assert_eq!(answers[1].0, 0);
        assert_eq!(answers[2], (503, "no\n".to_string()));
    }
}
