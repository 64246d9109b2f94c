//! Network namespaces for tests that cut links between nodes.
//!
//! One namespace per node, each with a veth into a Linux bridge held by a
//! "hub" namespace, and a veth from the root namespace (where the test and
//! its Kafka client run) into the same bridge: every node reaches every other
//! node and the test reaches every node, on a private /24 of 10.213.0.0/16.
//! [`Netns::isolate`] cuts a node off from its peers (blackhole routes on
//! both sides) but not from the test; [`Netns::heal`] removes the cuts.
//!
//! The processes started in the namespaces belong to the [`Netns`]: its
//! `Drop` kills them, then deletes the root veth and the namespaces, also
//! when the test panics. Needs root and `ip` (iproute2); a test that cannot
//! make namespaces fails, saying so.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespaces made by this test process so far (names and subnets differ).
static MADE: AtomicU32 = AtomicU32::new(0);

/// The first two octets of every test subnet.
const NET: [u8; 2] = [10, 213];

pub struct Netns {
    /// Namespace names start with this (`sluice-<pid>-<n>`).
    prefix: String,
    /// The root end of the veth into the hub is named this (`sl<pid>x<n>`:
    /// interface names have at most 15 bytes).
    root_name: String,
    /// The third octet of the subnet.
    subnet: u8,
    nodes: usize,
    /// The root end of the veth into the hub, once made.
    root_link: Option<String>,
    /// Namespaces made, to delete.
    made: Vec<String>,
    /// Blackhole routes in place: (in namespace of node, to node).
    cuts: Vec<(usize, usize)>,
    /// Processes started in the namespaces: (node, process).
    children: Vec<(usize, Child)>,
}

/// Runs `ip args`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Netns {
    /// Nodes 1..=`nodes`, each in a namespace of its own with address
    /// [`Netns::addr`], and the bridge that joins them and the test. Panics
    /// with what failed when namespaces cannot be made (not root, no `ip`).
    pub fn new(nodes: usize) -> Netns {
        assert!((1..=250).contains(&nodes));
        let n = MADE.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let mut net = Netns {
            prefix: format!("sluice-{pid}-{n}"),
            root_name: format!("sl{pid}x{n}"),
            subnet: pick_subnet(pid, n),
            nodes,
            root_link: None,
            made: Vec::new(),
            cuts: Vec::new(),
            children: Vec::new(),
        };
        if let Err(e) = net.build() {
            panic!(
                "this test needs network namespaces (root and iproute2's `ip netns`); \
                 making them failed: {e}"
            );
        }
        net
    }

    fn build(&mut self) -> Result<(), String> {
        let hub = self.hub();
        self.add_namespace(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=self.nodes {
            let ns = self.ns(i);
            self.add_namespace(&ns)?;
            let port = format!("n{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let root = self.root_name.clone();
        assert!(root.len() <= 15, "{root} is too long for an interface name");
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "root", "netns", &hub,
        ])?;
        self.root_link = Some(root.clone());
        ip(&["-n", &hub, "link", "set", "root", "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", "root", "up"])?;
        let addr = format!("{}/24", self.root_addr());
        ip(&["addr", "add", &addr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace of node `i` (1-based).
    pub fn ns(&self, i: usize) -> String {
        assert!((1..=self.nodes).contains(&i), "no node {i}");
        format!("{}-n{i}", self.prefix)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        assert!((1..=self.nodes).contains(&i), "no node {i}");
        Ipv4Addr::new(NET[0], NET[1], self.subnet, i as u8)
    }

    /// The test's own address on the bridge (root namespace).
    pub fn root_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, 254)
    }

    /// Starts `program args` inside node `i`'s namespace with its output
    /// appended to `log`; the process is killed when the `Netns` drops (or by
    /// [`Netns::kill`]). `configure` sets environment and such.
    pub fn spawn(
        &mut self,
        i: usize,
        program: &Path,
        args: &[String],
        log: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> u32 {
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        // `ip netns exec` enters the namespace and execs the program: the
        // child's pid is the program's.
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i)])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out);
        configure(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", program.display()));
        let pid = child.id();
        self.children.push((i, child));
        pid
    }

    /// Whether every process started in node `i` is still running.
    pub fn running(&mut self, i: usize) -> bool {
        self.children
            .iter_mut()
            .filter(|(n, _)| *n == i)
            .all(|(_, c)| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILLs (and reaps) the processes started in node `i`.
    pub fn kill(&mut self, i: usize) {
        for (_, c) in self.children.iter_mut().filter(|(n, _)| *n == i) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.retain(|(n, _)| *n != i);
    }

    /// Cuts node `i` off from every other node, both ways (blackhole
    /// routes: packets are dropped silently, connections hang, new ones fail
    /// at once), leaving its link to the test up.
    pub fn isolate(&mut self, i: usize) {
        for peer in (1..=self.nodes).filter(|&p| p != i) {
            for (at, to) in [(i, peer), (peer, i)] {
                let route = format!("{}/32", self.addr(to));
                ip(&["-n", &self.ns(at), "route", "add", "blackhole", &route])
                    .unwrap_or_else(|e| panic!("cutting node {i} off: {e}"));
                self.cuts.push((at, to));
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for (at, to) in std::mem::take(&mut self.cuts) {
            let route = format!("{}/32", self.addr(to));
            ip(&["-n", &self.ns(at), "route", "del", "blackhole", &route])
                .unwrap_or_else(|e| panic!("healing the cut from {at} to {to}: {e}"));
        }
    }
}

/// A third octet whose /24 no interface of the root namespace uses yet
/// (tests in parallel, or a crashed earlier run that left its link).
fn pick_subnet(pid: u32, n: u32) -> u8 {
    let used = ip_output(&["-4", "-o", "addr", "show"]);
    let start = pid.wrapping_mul(7).wrapping_add(n.wrapping_mul(31));
    (0..250u32)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|s| !used.contains(&format!(" {}.{}.{s}.", NET[0], NET[1])))
        .expect("a free 10.213.x.0/24")
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a veth deletes its peer; deleting a namespace deletes the
        // links in it.
        if let Some(root) = self.root_link.take() {
            let _ = ip(&["link", "del", &root]);
        }
        for ns in self.made.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}
